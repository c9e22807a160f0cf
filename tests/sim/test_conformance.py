"""Property-based conformance: generated valid and invalid requests for every operation of the bundled spec.

For each operation, strategies built from the spec's schemas draw path, query and body values (valid
requests), and a schema-aware mutation breaks exactly one rule of such a request (invalid requests). Against a
simulator in strict contract mode (every answer checked against the spec), the test asserts: never a 5xx, only
status codes the spec documents for the operation, answers that match their schemas (error answers included), every
invalid request refused with 400, and the last-resort guard never reached (``sim.internal_errors`` stays empty).
The number of examples is bounded (``_EXAMPLES`` per operation and kind) so the run fits CI.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import string
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ksef_async._schemas import schema_path
from ksef_async.operations import OPERATIONS, Operation, TokenKind
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread

from .conftest import NIP, TOKEN, Api

_EXAMPLES = 4
_SPEC: dict[str, Any] = json.loads(schema_path("openapi.json").read_text(encoding="utf-8"))
_COMPONENTS: dict[str, Any] = _SPEC["components"]["schemas"]
_SAFE_SEGMENT = string.ascii_letters + string.digits + "-_."

_DATES = st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1))  # noqa: DTZ001 - naive bounds
_FORMATS: dict[str, st.SearchStrategy[str]] = {
    "date-time": _DATES.map(lambda d: d.isoformat(timespec="seconds") + "Z"),
    "date": _DATES.map(lambda d: d.date().isoformat()),
    "byte": st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
}
_TEXT = st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"])
_DEFERRED: dict[str, st.SearchStrategy[Any]] = {}


def _strategy(schema: Any) -> st.SearchStrategy[Any]:  # noqa: PLR0912 - one branch per type
    """Values valid for ``schema`` (the spec's subset of JSON Schema; see request_validation)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in _DEFERRED:
            _DEFERRED[name] = st.deferred(lambda: _strategy(_COMPONENTS[name]))
        return _DEFERRED[name]
    if "type" not in schema and schema.get("allOf"):
        inner = _strategy(schema["allOf"][0])
        return st.one_of(st.none(), inner) if schema.get("nullable") else inner
    kind = schema.get("type")
    base: st.SearchStrategy[Any]
    if "enum" in schema:
        base = st.sampled_from(schema["enum"])
    elif kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        high = min(high, low + 24) if high is not None else low + 24
        if schema.get("format") in _FORMATS:
            base = _FORMATS[schema["format"]]
        elif "pattern" in schema:
            pattern = schema["pattern"].replace("\\d", "[0-9]")
            base = st.from_regex(pattern, fullmatch=True).filter(
                lambda s: low <= len(s) <= (schema.get("maxLength") or 10**6)
            )
        else:
            base = st.text(_TEXT, min_size=low, max_size=high)
    elif kind == "integer":
        top = 2**31 - 1 if schema.get("format") != "int64" else 2**53
        base = st.integers(schema.get("minimum", -top - 1), schema.get("maximum", top))
    elif kind == "number":
        base = st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    elif kind == "boolean":
        base = st.booleans()
    elif kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + 3), low + 3)
        base = st.lists(_strategy(schema.get("items", {})), min_size=low, max_size=high)
    elif kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        required = set(schema.get("required", ()))
        base = st.fixed_dictionaries(
            {name: _strategy(sub) for name, sub in properties.items() if name in required},
            optional={name: _strategy(sub) for name, sub in properties.items() if name not in required},
        )
    else:
        base = st.none() | st.integers() | st.text(_TEXT, max_size=8)
    return st.one_of(st.none(), base) if schema.get("nullable") else base


def _resolve(schema: Any) -> dict[str, Any]:
    while isinstance(schema, dict):
        if "$ref" in schema:
            schema = _COMPONENTS[schema["$ref"].rsplit("/", 1)[-1]]
        elif "type" not in schema and len(schema.get("allOf", ())) == 1:
            schema = schema["allOf"][0]
        else:
            return schema
    return {}


# -- breaking exactly one rule ---------------------------------------------------------------------------------------


def _wrong_values(schema: Any) -> list[Any]:
    """Values that break ``schema`` (each on its own), or [] when it constrains nothing breakable."""
    resolved = _resolve(schema)
    kind = resolved.get("type")
    out: list[Any] = []
    if kind in ("string", "integer", "boolean", "number"):
        out.append([1, 2] if kind == "string" else "not-a-" + kind)
    elif kind == "array":
        out.append({"not": "an array"})
    elif kind == "object":
        out.append("not an object")
    if "enum" in resolved:
        out.append("NotAnEnumValue")
    if resolved.get("minLength", 0) > 1:
        out.append("x")
    if "maxLength" in resolved:
        out.append("9" * (resolved["maxLength"] + 1))
    if "pattern" in resolved and "maxLength" not in resolved:
        out.append("!not matching!")
    if "minimum" in resolved:
        out.append(resolved["minimum"] - 1)
    if "maximum" in resolved:
        out.append(resolved["maximum"] + 1)
    if resolved.get("format") == "date-time":
        out.append("2025-01-01T00:00:00")  # no offset
    return out


def _mutation_points(schema: Any, value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """``(path, replacement)`` pairs, each making ``value`` break ``schema`` (``...`` as replacement: delete)."""
    resolved = _resolve(schema)
    for sub in resolved.get("allOf", ()) if "type" in resolved else ():
        yield from _mutation_points(sub, value, path)
    for wrong in _wrong_values(schema):
        yield path, wrong
    if isinstance(value, dict):
        for name in resolved.get("required", ()):
            if name in value:
                yield (*path, name), ...
        for name, sub in (resolved.get("properties") or {}).items():
            if name in value:
                yield from _mutation_points(sub, value[name], (*path, name))
    elif isinstance(value, list) and value and "items" in resolved:
        yield from _mutation_points(resolved["items"], value[0], (*path, 0))


def _mutated(value: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    if not path:
        return replacement
    copy = dict(value) if isinstance(value, dict) else list(value)
    head, rest = path[0], path[1:]
    if not rest and replacement is ...:
        del copy[head]
    else:
        copy[head] = _mutated(value[head], rest, replacement)
    return copy


# -- drawing requests ------------------------------------------------------------------------------------------------


def _parameters(op: Operation) -> list[dict[str, Any]]:
    spec_op = _SPEC["paths"][op.path][op.method.lower()]
    return [p for p in spec_op.get("parameters", ()) if p["in"] in ("path", "query")]


def _body_schema(op: Operation) -> Any:
    content = (_SPEC["paths"][op.path][op.method.lower()].get("requestBody") or {}).get("content") or {}
    media = content.get("application/json")
    return None if media is None else media.get("schema")


@st.composite
def _requests(draw: st.DrawFn, op: Operation) -> dict[str, Any]:
    """A valid request to ``op``: ``{"path": {...}, "query": {...}, "body": ...}``."""
    request: dict[str, Any] = {"path": {}, "query": {}, "body": None}
    for param in _parameters(op):
        if param["in"] == "query" and not param.get("required") and draw(st.booleans()):
            continue
        value = draw(_strategy(param["schema"]))
        if param["in"] == "path":
            assume(isinstance(value, str) and value and set(value) <= set(_SAFE_SEGMENT) and value not in (".", ".."))
        request[param["in"]][param["name"]] = value
    schema = _body_schema(op)
    if schema is not None:
        request["body"] = draw(_strategy(schema))
    return request


@st.composite
def _invalid_requests(draw: st.DrawFn, op: Operation) -> dict[str, Any]:
    """A request to ``op`` that breaks exactly one rule of the spec."""
    request = draw(_requests(op))
    points: list[tuple[str, Any]] = []
    for param in _parameters(op):
        for wrong in _wrong_values(param["schema"]):
            if param["in"] == "path" and not (isinstance(wrong, str) and set(wrong) <= set(_SAFE_SEGMENT)):
                continue
            if param["in"] == "query" and isinstance(wrong, dict | list):
                continue  # a query string carries text; a list is only wrong in a body
            if param["in"] == "query" and _resolve(param["schema"]).get("type") == "string" and wrong == [1, 2]:
                continue
            points.append((f"{param['in']}:{param['name']}", wrong))
        if param["in"] == "query" and param.get("required"):
            points.append((f"query:{param['name']}", ...))
    schema = _body_schema(op)
    if schema is not None:
        points.extend(("body", point) for point in _mutation_points(schema, request["body"]))
    assume(points)
    where, what = draw(st.sampled_from(points))
    if where == "body":
        request["body"] = _mutated(request["body"], *what)
    else:
        kind, name = where.split(":", 1)
        if what is ...:
            request[kind].pop(name, None)
        else:
            request[kind][name] = what
    request["broken"] = where if where != "body" else f"body{list(what[0])}"
    return request


# -- sending ---------------------------------------------------------------------------------------------------------


def _query_text(value: Any) -> list[str]:
    if isinstance(value, list):
        return [y for x in value for y in _query_text(x)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]


class _Caller:
    """Sends drawn requests to a simulator served from its own thread, from a private event loop."""

    def __init__(self, sim: KsefSimulator) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.http = self.loop.run_until_complete(self._session())
        self.api = Api(self.http, sim.base_url)
        self.tokens: dict[TokenKind, str] = {}
        self.login()

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def login(self) -> None:
        tokens = self.loop.run_until_complete(self.api.login(NIP, TOKEN))
        self.tokens[TokenKind.ACCESS] = tokens["accessToken"]["token"]
        self.tokens[TokenKind.REFRESH] = tokens["refreshToken"]["token"]
        _, auth_token = self.loop.run_until_complete(self.api.start_token_auth(NIP, TOKEN))
        self.tokens[TokenKind.AUTHENTICATION] = auth_token

    def send(self, op: Operation, request: dict[str, Any]) -> tuple[int, Any]:
        """Send ``request`` to ``op`` with the token it takes; restore what the operation changed for the others."""
        answer = self._send(op, request)
        if op.operation_id in _TURN_LIMITS_ON:
            self.sim.rate_limiter.enabled = False
        if op.operation_id in _RELOGIN_AFTER:
            self.login()
        return answer

    def _send(self, op: Operation, request: dict[str, Any]) -> tuple[int, Any]:
        path = op.path
        for name, value in request["path"].items():
            path = path.replace("{" + name + "}", urllib.parse.quote(str(value), safe=""))
        query = [(name, text) for name, value in request["query"].items() for text in _query_text(value)]
        token = self.tokens[op.tokens[0]] if op.tokens else ""
        body = request["body"]
        status, answer, _ = self.loop.run_until_complete(
            self.api.call(op.method, path, json=body if body is not None else None, token=token, params=query)
        )
        return status, answer

    def close(self) -> None:
        self.loop.run_until_complete(self.http.close())
        self.loop.close()


@pytest.fixture(scope="module")
def caller() -> Iterator[_Caller]:
    sim = KsefSimulator(contexts=[(NIP, TOKEN)], strict_contract=True, rate_limits="off", seed=7)
    with serve_in_thread(sim):
        calling = _Caller(sim)
        try:
            yield calling
        finally:
            calling.close()


def _documented(op: Operation) -> set[int]:
    return {int(code) for code in _SPEC["paths"][op.path][op.method.lower()]["responses"]}


def _assert_conforms(caller: _Caller, op: Operation, status: int, answer: Any, request: dict[str, Any]) -> None:
    sim = caller.sim
    assert status < 500, f"{op.operation_id} {request} -> {status} {answer!r}"
    assert status in _documented(op), f"{op.operation_id} {request} -> undocumented {status} {answer!r}"
    responses = [v for v in sim.contract_violations if v.direction == "response"]
    assert not responses, "\n".join(map(str, responses))
    assert not sim.internal_errors, sim.internal_errors
    sim.contract_violations.clear()  # the invalid requests are recorded on purpose


_TURN_LIMITS_ON = frozenset(
    {"post_testdata_rate_limits", "delete_testdata_rate_limits", "post_testdata_rate_limits_production"}
)
"""Operations that switch the rate limiter on (as in KSeF's test environment); the test switches it back off."""

_RELOGIN_AFTER = frozenset(
    {
        # These end the test's own login; each still runs, with a fresh login afterwards.
        "delete_auth_sessions_current",
        "post_auth_token_refresh",
        "post_auth_token_redeem",
    }
)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.operation_id)
def test_generated_requests_conform(caller: _Caller, op: Operation) -> None:
    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(valid=_requests(op), invalid=_invalid_requests(op) if _has_rules(op) else st.none())
    def check(valid: dict[str, Any], invalid: dict[str, Any] | None) -> None:
        status, answer = caller.send(op, valid)
        _assert_conforms(caller, op, status, answer, valid)
        if invalid is not None:
            status, answer = caller.send(op, invalid)
            _assert_conforms(caller, op, status, answer, invalid)
            # Authorization (403) comes before validation, as in KSeF; the seeded Nip context lacks VatUeManage.
            refused = status == 400 or (status == 403 and answer.get("reasonCode") == "missing-permissions")
            assert refused, f"{op.operation_id}: {invalid} broke {invalid['broken']} but got {status} {answer!r}"

    check()


def _has_rules(op: Operation) -> bool:
    return _body_schema(op) is not None or any(_wrong_values(p["schema"]) for p in _parameters(op))
