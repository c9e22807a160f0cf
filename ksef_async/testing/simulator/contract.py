"""Strict contract mode: every JSON body the simulator receives or sends is checked against the bundled OpenAPI spec.

The spec is OpenAPI 3.0 (``nullable``, ``$ref`` into ``#/components/schemas``, formats ``byte``, ``date-time``,
``int32``...); `to_json_schema` turns a schema into JSON Schema 2020-12 so ``jsonschema`` can check it. Formats are
checked by our own checker (``byte`` = strict Base64, ``date-time`` = ISO 8601 with an offset, integer ranges),
so the result does not depend on which optional format packages happen to be installed. ``jsonschema`` is
imported only when a checker is created, i.e. only in strict mode.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ksef_async._schemas import schema_path
from ksef_async.core.codes import ExceptionCode
from ksef_async.core.extras import require_extra
from ksef_async.operations import Operation
from ksef_async.testing.simulator.spec_codes import documented_400_codes, documented_400_description

__all__ = ["ContractChecker", "ContractViolation", "ContractViolationError", "require_contract_extra", "to_json_schema"]

_log = logging.getLogger("ksef_async.testing.simulator.contract")
_REF_PREFIX = "#/components/schemas/"
_DROPPED = frozenset({"nullable", "example", "examples", "readOnly", "writeOnly", "deprecated", "xml"})
_SUBSCHEMA_KEYS = frozenset({"items", "not", "allOf", "anyOf", "oneOf"})
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class ContractViolation:
    """One body that does not match the spec."""

    direction: str
    """``"request"`` (sent to the simulator) or ``"response"`` (sent by it)."""
    method: str
    path: str
    status: int | None
    message: str

    def __str__(self) -> str:
        status = f" -> {self.status}" if self.status is not None else ""
        return f"{self.direction} {self.method} {self.path}{status}: {self.message}"


class ContractViolationError(AssertionError):
    """Raised in strict mode when a body the simulator would send does not match the spec."""


def to_json_schema(schema: Any) -> Any:
    """Convert an OpenAPI 3.0 schema object to JSON Schema 2020-12 with component refs under ``#/$defs/``."""
    if isinstance(schema, list):
        return [to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return {"$ref": "#/$defs/" + schema["$ref"].removeprefix(_REF_PREFIX)}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMA_KEYS or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    return _nullable(out) if schema.get("nullable") else out


def _nullable(out: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI's ``nullable: true``: widen a plain ``type``, otherwise allow null beside the whole schema."""
    if "type" in out and "enum" not in out and isinstance(out["type"], str):
        return out | {"type": [out["type"], "null"]}
    return {"anyOf": [out, {"type": "null"}]}


@functools.cache
def _spec() -> dict[str, Any]:
    with schema_path("openapi.json").open(encoding="utf-8") as fh:
        spec: dict[str, Any] = json.load(fh)
    return spec


@functools.cache
def _defs() -> dict[str, Any]:
    return {name: to_json_schema(schema) for name, schema in _spec()["components"]["schemas"].items()}


def _check_byte(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None and "T" in value


def _check_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def require_contract_extra() -> Any:
    """Return ``jsonschema`` (the test extra; strict mode only).

    Raises:
        MissingExtraError: It is not installed (the message names the extra and the install command).
    """
    return require_extra("jsonschema", extra="test", feature="the simulator's strict contract mode")


class ContractChecker:
    """Validates request and response bodies of each operation against the spec; collects violations."""

    def __init__(self) -> None:
        jsonschema = require_contract_extra()
        self._jsonschema = jsonschema
        checker = jsonschema.FormatChecker(formats=())
        checker.checks("byte")(_check_byte)
        checker.checks("date-time")(_check_datetime)
        checker.checks("date")(_check_date)
        for name, (low, high) in _INT_RANGES.items():
            checker.checks(name)(functools.partial(_in_range, low=low, high=high))
        self._format_checker = checker
        self.violations: list[ContractViolation] = []
        self._validators: dict[tuple[str, ...], Any] = {}

    def _validator(self, key: tuple[str, ...], schema: Any) -> Any:
        validator = self._validators.get(key)
        if validator is None:
            root = {"$defs": _defs(), **to_json_schema(schema)}
            validator = self._jsonschema.Draft202012Validator(root, format_checker=self._format_checker)
            self._validators[key] = validator
        return validator

    def _errors(self, key: tuple[str, ...], schema: Any, body: Any) -> list[str]:
        validator = self._validator(key, schema)
        return [
            f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {_shorten(err.message)}"
            for err in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
        ]

    def record(self, violation: ContractViolation) -> None:
        """Keep and log a violation."""
        self.violations.append(violation)
        _log.error("KSeF contract violation: %s", violation)

    def check_request(self, op: Operation, method: str, path: str, content_type: str, body: Any) -> list[str]:
        """Check a JSON request body; return (and record) the problems."""
        spec_op = _spec()["paths"][op.path][op.method.lower()]
        content = (spec_op.get("requestBody") or {}).get("content") or {}
        if content_type not in content:
            if content or body is not None:
                problems = [f"request Content-Type {content_type!r} not among {sorted(content) or 'none'}"]
                self.record(ContractViolation("request", method, path, None, "; ".join(problems)))
                return problems
            return []
        schema = content[content_type].get("schema")
        if schema is None or not content_type.endswith("json"):
            return []
        problems = self._errors(("req", op.operation_id, content_type), schema, body)
        if problems:
            self.record(ContractViolation("request", method, path, None, "; ".join(problems)))
        return problems

    def check_response(
        self,
        op: Operation,
        method: str,
        path: str,
        *,
        status: int,
        content_type: str | None,
        body: Any,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Check a response: the status must be documented for the operation and a JSON body must match.

        With ``headers``, every header the spec documents for that status (``Retry-After``, ``x-ms-meta-hash``)
        must be present and match its schema; ``X-System-Warning`` is optional.
        """
        spec_op = _spec()["paths"][op.path][op.method.lower()]
        response = spec_op["responses"].get(str(status))
        if response is None:
            problems = [f"status {status} is not documented for {op.method} {op.path}"]
        else:
            content = response.get("content") or {}
            if content_type is None:
                problems = [] if not content else [f"empty body where the spec documents {sorted(content)}"]
            elif content_type not in content:
                problems = [f"Content-Type {content_type!r} not among {sorted(content) or 'none (empty body)'}"]
            else:
                schema = content[content_type].get("schema")
                problems = (
                    self._errors(("resp", op.operation_id, str(status), content_type), schema, body)
                    if schema is not None and content_type.endswith("json")
                    else []
                )
            if headers is not None:
                problems += self._header_problems(op, status, response.get("headers") or {}, headers)
            if status == 400 and content_type is not None and content_type.endswith("json"):  # noqa: PLR2004
                problems += _undocumented_codes(op, body)
        if problems:
            self.record(ContractViolation("response", method, path, status, "; ".join(problems)))
        return problems

    def _header_problems(
        self, op: Operation, status: int, documented: Mapping[str, Any], headers: Mapping[str, str]
    ) -> list[str]:
        problems: list[str] = []
        for name, spec in documented.items():
            if name.lower() == "x-system-warning":
                continue
            value = headers.get(name)
            if value is None:
                problems.append(f"header {name} is missing")
                continue
            schema = spec.get("schema") or {}
            resolved = _defs().get(schema.get("$ref", "").removeprefix(_REF_PREFIX), schema)
            instance: Any = value
            if resolved.get("type") == "integer":
                try:
                    instance = int(value)
                except ValueError:
                    problems.append(f"header {name}: {value!r} is not an integer")
                    continue
            key = ("hdr", op.operation_id, str(status), name)
            problems += [f"header {name}: {p}" for p in self._errors(key, schema, instance)]
        return problems


def _exception_details(body: Any) -> list[tuple[Any, Any]]:
    """(code, description) of each error in a 400 body: ``ExceptionResponse`` or ``BadRequestProblemDetails``."""
    if not isinstance(body, dict):
        return []
    exception = body.get("exception")
    if isinstance(exception, dict) and isinstance(exception.get("exceptionDetailList"), list):
        return [
            (d.get("exceptionCode"), d.get("exceptionDescription"))
            for d in exception["exceptionDetailList"]
            if isinstance(d, dict)
        ]
    if isinstance(body.get("errors"), list):
        return [(e.get("code"), e.get("description")) for e in body["errors"] if isinstance(e, dict)]
    return []


def _undocumented_codes(op: Operation, body: Any) -> list[str]:
    """Errors that the operation's 400 table (``ExceptionCode | ExceptionDescription | Details``) does not list.

    21405 ("Błąd walidacji danych wejściowych.") is always allowed: it is how KSeF refuses any request that breaks
    the contract, on every operation. A listed code must carry the description the table gives it.
    """
    problems = []
    for code, description in _exception_details(body):
        expected = documented_400_description(op.method, op.path, code) if isinstance(code, int) else None
        if expected is None and code == ExceptionCode.VALIDATION_ERROR:
            expected = ExceptionCode.VALIDATION_ERROR.description
        if expected is None:
            listed = sorted(documented_400_codes(op.method, op.path))
            problems.append(f"exception code {code} is not documented for {op.method} {op.path} (listed: {listed})")
        elif description != expected:
            problems.append(f"exception code {code}: description {description!r}, the spec says {expected!r}")
    return problems


def _shorten(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _in_range(value: object, *, low: int, high: int) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        return True
    return low <= value <= high
