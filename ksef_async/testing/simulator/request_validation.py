"""Every request checked against the bundled spec before its handler runs: path, query and header parameters, body.

KSeF refuses a request that breaks the OpenAPI contract with 400 and exception code 21405 ("Błąd walidacji danych
wejściowych."), or the ``BadRequestProblemDetails`` form when the client sent ``X-Error-Format: problem-details``;
`RequestValidator.problems` lists what is wrong, each line naming the field (``body.subjectIdentifier.value: ...``,
``query pageSize: ...``, ``path referenceNumber: ...``), and the app turns them into that answer.

The validator is compiled once, when the simulator starts, from the spec's own subset of JSON Schema (OpenAPI 3.0:
``$ref``, ``allOf``, ``nullable``, ``type``, ``enum``, ``required``, ``properties``, ``items``, ``minLength``,
``maxLength``, ``pattern``, ``minimum``, ``maximum``, ``minItems``, ``maxItems`` and the formats ``int32``,
``int64``, ``date-time``, ``date``, ``byte``) into plain closures: no ``jsonschema`` at run time, so the simulator
keeps working with only the ``[cli]`` extra, and a request costs a few dictionary look-ups per field. A keyword the
compiler does not know fails the compilation (`tests/sim/test_request_validation.py` compiles the bundled spec), so
a newer spec cannot be checked half-way without anyone noticing. Properties the spec does not list are ignored,
as KSeF's JSON binding does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ksef_async._schemas import schema_path
from ksef_async.operations import OPERATIONS, Operation

__all__ = ["MAX_DETAILS", "RequestValidator", "SpecKeywordError"]

MAX_DETAILS = 20
"""At most this many problems are reported for one request (the first ones found)."""

_REF_PREFIX = "#/components/schemas/"
_ANNOTATIONS = frozenset(
    {"description", "example", "examples", "default", "readOnly", "writeOnly", "deprecated", "xml"}
)
_KNOWN = _ANNOTATIONS | {
    "$ref",
    "allOf",
    "nullable",
    "type",
    "format",
    "enum",
    "required",
    "properties",
    "items",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}

_LEFT_TO_HANDLER: Mapping[str, tuple[str, ...]] = {
    # The spec's error table gives these their own code, which the handler answers: 21161 for more than 50 parts.
    "post_sessions_batch": ("body.batchFile.fileParts: must have at most",),
}
"""Operation id -> problem prefixes not refused here because KSeF answers them with a more specific code."""

Check = Callable[[Any, str, list[str]], None]
"""A compiled schema: ``check(value, where, problems)`` appends a line per problem found at ``where``."""


class SpecKeywordError(ValueError):
    """The spec uses a JSON Schema keyword the compiler does not implement (so it cannot be checked faithfully)."""


def _is_type(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise SpecKeywordError(f"unknown type {kind!r}")


def _format_ok(fmt: str, value: Any) -> bool:  # noqa: PLR0911 - one branch per format
    if fmt in _INT_RANGES and isinstance(value, int) and not isinstance(value, bool):
        low, high = _INT_RANGES[fmt]
        return low <= value <= high
    if not isinstance(value, str):
        return True
    if fmt == "date-time":
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return False
        return parsed.tzinfo is not None and "T" in value.upper()
    if fmt == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return False
        return len(value) == 10  # noqa: PLR2004 - YYYY-MM-DD only
    if fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    return True


def _anchored(pattern: str) -> re.Pattern[str]:
    # ECMA-262 ``$`` (JSON Schema's dialect) does not match before a final newline; Python's and .NET's do.
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Compiler:
    """Compiles spec schemas into `Check` closures, each component once."""

    def __init__(self, components: Mapping[str, Any]) -> None:
        self._components = components
        self._compiled: dict[str, Check] = {}

    def ref(self, name: str) -> Check:
        compiled = self._compiled.get(name)
        if compiled is not None:
            return compiled
        cell: list[Check] = []

        def deferred(value: Any, where: str, out: list[str]) -> None:  # a recursive reference, resolved later
            cell[0](value, where, out)

        self._compiled[name] = deferred
        compiled = self.compile(self._components[name])
        cell.append(compiled)
        self._compiled[name] = compiled
        return compiled

    def compile(self, schema: Mapping[str, Any]) -> Check:  # noqa: C901, PLR0915 - one branch per keyword
        unknown = set(schema) - _KNOWN
        if unknown:
            raise SpecKeywordError(f"unsupported JSON Schema keywords {sorted(unknown)}")
        if "$ref" in schema:
            return self.ref(schema["$ref"].removeprefix(_REF_PREFIX))
        nullable = bool(schema.get("nullable"))
        kind: str | None = schema.get("type")
        steps: list[Check] = [self.compile(sub) for sub in schema.get("allOf", ())]
        if "enum" in schema:
            allowed = tuple(schema["enum"])
            allowed_set = frozenset(v for v in allowed if not isinstance(v, bool))

            def enum(value: Any, where: str, out: list[str]) -> None:
                if isinstance(value, bool) or value not in allowed_set:
                    shown = ", ".join(str(v) for v in allowed)
                    out.append(f"{where}: {_short(value)} is not one of {shown}")

            steps.append(enum)
        if "format" in schema:
            fmt = schema["format"]
            hint = " (ISO 8601 with a UTC offset, e.g. 2025-01-31T12:00:00Z)" if fmt == "date-time" else ""

            def formatted(value: Any, where: str, out: list[str]) -> None:
                if not _format_ok(fmt, value):
                    out.append(f"{where}: {_short(value)} is not a valid {fmt}{hint}")

            steps.append(formatted)
        if "minLength" in schema or "maxLength" in schema:
            min_len, max_len = schema.get("minLength", 0), schema.get("maxLength")

            def length(value: Any, where: str, out: list[str]) -> None:
                if isinstance(value, str):
                    if len(value) < min_len:
                        out.append(f"{where}: must have at least {min_len} characters (has {len(value)})")
                    elif max_len is not None and len(value) > max_len:
                        out.append(f"{where}: must have at most {max_len} characters (has {len(value)})")

            steps.append(length)
        if "pattern" in schema:
            regex = _anchored(schema["pattern"])

            def matches(value: Any, where: str, out: list[str]) -> None:
                if isinstance(value, str) and regex.search(value) is None:
                    out.append(f"{where}: {_short(value)} does not match {regex.pattern}")

            steps.append(matches)
        if "minimum" in schema or "maximum" in schema:
            low, high = schema.get("minimum"), schema.get("maximum")

            def bounded(value: Any, where: str, out: list[str]) -> None:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    if low is not None and value < low:
                        out.append(f"{where}: {value} is below the minimum {low}")
                    elif high is not None and value > high:
                        out.append(f"{where}: {value} is above the maximum {high}")

            steps.append(bounded)
        if "minItems" in schema or "maxItems" in schema:
            min_items, max_items = schema.get("minItems", 0), schema.get("maxItems")

            def counted(value: Any, where: str, out: list[str]) -> None:
                if isinstance(value, list):
                    if len(value) < min_items:
                        out.append(f"{where}: must have at least {min_items} items (has {len(value)})")
                    elif max_items is not None and len(value) > max_items:
                        out.append(f"{where}: must have at most {max_items} items (has {len(value)})")

            steps.append(counted)
        if "items" in schema:
            item_check = self.compile(schema["items"])

            def each(value: Any, where: str, out: list[str]) -> None:
                if isinstance(value, list):
                    for index, item in enumerate(value):
                        item_check(item, f"{where}[{index}]", out)
                        if len(out) >= MAX_DETAILS:
                            return

            steps.append(each)
        required: tuple[str, ...] = tuple(schema.get("required", ()))
        properties = tuple((name, self.compile(sub)) for name, sub in (schema.get("properties") or {}).items())
        if required or properties:

            def members(value: Any, where: str, out: list[str]) -> None:
                if not isinstance(value, dict):
                    return
                out.extend(f"{where}.{name}: is required" for name in required if name not in value)
                for name, check in properties:
                    if name in value:
                        check(value[name], f"{where}.{name}", out)

            steps.append(members)
        return _combine(kind, nullable, steps)


def _combine(kind: str | None, nullable: bool, steps: list[Check]) -> Check:
    expected = _TYPE_NAMES.get(kind or "", "")
    if kind is not None:
        _is_type(kind, None)  # unknown type names fail here, at compile time

    def check(value: Any, where: str, out: list[str]) -> None:
        if value is None:
            if nullable:
                return
            if kind is not None:
                out.append(f"{where}: is null, expected {expected}")
                return
        elif kind is not None and not _is_type(kind, value):
            out.append(f"{where}: {_short(value)} is not {expected}")
            return
        for step in steps:
            step(value, where, out)

    return check


def _required_properties(components: Mapping[str, Any], schema: Mapping[str, Any]) -> set[str]:
    """The properties a body schema requires: its own ``required`` and those of what its ``$ref``/``allOf`` names."""
    required: set[str] = set()
    while True:
        required.update(schema.get("required", ()))
        if "$ref" in schema:
            schema = components[schema["$ref"].removeprefix(_REF_PREFIX)]
        elif len(schema.get("allOf", ())) == 1:
            schema = schema["allOf"][0]
        else:
            return required


def _resolve(components: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema a parameter's ``$ref`` / single ``allOf`` stands for (to know how to convert its text)."""
    while True:
        if "$ref" in schema:
            schema = components[schema["$ref"].removeprefix(_REF_PREFIX)]
        elif "type" not in schema and len(schema.get("allOf", ())) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


_BOOLEANS = {"true": True, "false": False}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _to_integer(text: str) -> int:
    if _INTEGER.fullmatch(text.strip()) is None:
        raise ValueError(f"{_short(text)} is not an integer")
    return int(text)


def _to_number(text: str) -> float:
    if _NUMBER.fullmatch(text.strip()) is None:
        raise ValueError(f"{_short(text)} is not a number")
    return float(text)


def _to_boolean(text: str) -> bool:
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise ValueError(f"{_short(text)} is not a boolean")
    return value


def _converter(components: Mapping[str, Any], schema: Mapping[str, Any]) -> Callable[[str], Any]:
    """Turn a parameter's text into the JSON value its schema describes (``ValueError`` when it cannot be one)."""
    kind = _resolve(components, schema).get("type")
    return {"integer": _to_integer, "number": _to_number, "boolean": _to_boolean}.get(kind or "", str)


@dataclass(frozen=True)
class _Parameter:
    location: str
    name: str
    required: bool
    array: bool
    convert: Callable[[str], Any]
    check: Check


@dataclass(frozen=True)
class _OperationChecks:
    parameters: tuple[_Parameter, ...]
    bodies: Mapping[str, Check | None]
    """Content type -> compiled schema (None: not JSON, only the type is checked); empty: the operation takes none."""
    left_to_handler: tuple[str, ...] = ()
    absent_body_is_empty: bool = False
    """The body is optional and its JSON schema requires no property, so a request without one means ``{}``."""


class RequestValidator:
    """The spec's request rules of every operation, compiled once; `problems` checks one request."""

    def __init__(self, spec: Mapping[str, Any] | None = None) -> None:
        if spec is None:
            with schema_path("openapi.json").open(encoding="utf-8") as fh:
                spec = json.load(fh)
        assert spec is not None
        components: Mapping[str, Any] = spec["components"]["schemas"]
        shared: Mapping[str, Any] = spec["components"].get("parameters", {})
        compiler = _Compiler(components)
        self._checks: dict[str, _OperationChecks] = {}
        for op in OPERATIONS:
            spec_op = spec["paths"][op.path][op.method.lower()]
            parameters = []
            for raw in spec_op.get("parameters", ()):
                param = shared[raw["$ref"].rsplit("/", 1)[-1]] if "$ref" in raw else raw
                schema = param.get("schema") or {}
                resolved = _resolve(components, schema)
                array = resolved.get("type") == "array"
                parameters.append(
                    _Parameter(
                        location=param["in"],
                        name=param["name"],
                        required=bool(param.get("required")) or param["in"] == "path",
                        array=array,
                        convert=_converter(components, resolved.get("items", {}) if array else schema),
                        check=compiler.compile(schema),
                    )
                )
            content = (spec_op.get("requestBody") or {}).get("content") or {}
            bodies = {
                content_type: compiler.compile(media["schema"])
                if content_type.endswith("json") and "schema" in media
                else None
                for content_type, media in content.items()
            }
            left = _LEFT_TO_HANDLER.get(op.operation_id, ())
            request_body = spec_op.get("requestBody") or {}
            absent_is_empty = (
                bool(content)
                and not request_body.get("required")
                and all(
                    content_type.endswith("json") and not _required_properties(components, media.get("schema") or {})
                    for content_type, media in content.items()
                )
            )
            self._checks[op.operation_id] = _OperationChecks(tuple(parameters), bodies, left, absent_is_empty)

    def absent_body_is_empty(self, op: Operation) -> bool:
        """Whether a request to ``op`` without a body stands for the empty object ``{}``.

        OpenAPI 3.0: ``requestBody.required`` defaults to false, so the body may be left out. Where the body's
        schema requires no property (the permission and certificate queries, ``RevokeCertificateRequest``...), the
        operation can run without one, as with no filter; where it does, a missing body still lacks the required
        properties and is refused with 21405.
        """
        return self._checks[op.operation_id].absent_body_is_empty

    def problems(self, op: Operation, request: web.Request, content_type: str | None, body: Any) -> list[str]:
        """What breaks the spec in ``request`` to ``op`` (empty when nothing does), at most `MAX_DETAILS` lines.

        Args:
            op: The matched operation.
            request: The request (its path, query and headers are read).
            content_type: The body's media type, None for an empty body.
            body: The parsed JSON body (None when empty or not JSON).
        """
        checks = self._checks[op.operation_id]
        out: list[str] = []
        for param in checks.parameters:
            self._check_parameter(param, request, out)
        if checks.bodies:
            if content_type is None:
                if not checks.absent_body_is_empty:
                    out.append(f"body: required ({', '.join(checks.bodies)})")
            elif content_type not in checks.bodies:
                out.append(f"body: Content-Type {content_type!r} is not accepted ({', '.join(checks.bodies)})")
            else:
                check = checks.bodies[content_type]
                if check is not None:
                    check(body, "body", out)
        if checks.left_to_handler and out:
            out = [line for line in out if not line.startswith(checks.left_to_handler)]
        return out[:MAX_DETAILS]

    @staticmethod
    def _check_parameter(param: _Parameter, request: web.Request, out: list[str]) -> None:
        where = f"{param.location} {param.name}"
        if param.location == "path":
            texts = [request.match_info.get(param.name, "")]
        elif param.location == "query":
            texts = request.query.getall(param.name, [])
        elif param.location == "header":
            texts = request.headers.getall(param.name, [])
        else:  # cookie: KSeF uses none
            return
        if not texts:
            if param.required:
                out.append(f"{where}: is required")
            return
        values: list[Any] = []
        for text in texts if param.array else texts[:1]:
            try:
                values.append(param.convert(text))
            except ValueError as exc:
                out.append(f"{where}: {exc}")
                return
        param.check(values if param.array else values[0], where, out)
