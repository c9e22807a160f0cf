"""Strict contract mode: the OpenAPI-to-JSON-Schema conversion and that mismatches are caught both ways."""

from __future__ import annotations

from typing import Any

import aiohttp
import aiohttp.web
import pytest

from ksef_async.operations import operation
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import app as app_module
from ksef_async.testing.simulator.contract import ContractChecker, to_json_schema

pytestmark = pytest.mark.anyio


def test_conversion_handles_nullable_refs_and_enums() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "nullable": True},
            "b": {"allOf": [{"$ref": "#/components/schemas/X"}], "nullable": True},
            "c": {"enum": ["P", "Q"], "type": "string", "nullable": True},
            "type": {"type": "integer", "example": 3},
        },
    }
    assert to_json_schema(schema) == {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"allOf": [{"$ref": "#/$defs/X"}]}, {"type": "null"}]},
            "c": {"anyOf": [{"enum": ["P", "Q"], "type": "string"}, {"type": "null"}]},
            "type": {"type": "integer"},
        },
    }


def _status_body(**overrides: Any) -> dict[str, Any]:
    return {
        "status": {"code": 200, "description": "ok"},
        "dateCreated": "2025-09-18T15:00:30+00:00",
        "dateUpdated": "2025-09-18T15:01:20+00:00",
    } | overrides


def test_response_checks() -> None:
    checker = ContractChecker()
    op = operation("get_sessions_by_reference_number")
    assert (
        checker.check_response(op, "GET", "/x", status=200, content_type="application/json", body=_status_body()) == []
    )
    assert checker.check_response(
        op, "GET", "/x", status=200, content_type="application/json", body=_status_body(dateCreated="yesterday")
    )
    assert checker.check_response(
        op, "GET", "/x", status=200, content_type="application/json", body={"status": {"code": 200}}
    )
    assert checker.check_response(op, "GET", "/x", status=418, content_type=None, body=None)
    assert checker.check_response(op, "GET", "/x", status=200, content_type="text/plain", body=None)
    assert len(checker.violations) == 4
    assert all(v.direction == "response" for v in checker.violations)


def test_byte_and_integer_formats_are_checked() -> None:
    checker = ContractChecker()
    op = operation("post_sessions_online_invoices")
    body = {
        "invoiceHash": "A" * 43 + "=",
        "invoiceSize": 1,
        "encryptedInvoiceHash": "A" * 43 + "=",
        "encryptedInvoiceSize": 16,
        "encryptedInvoiceContent": "AAAA",
    }
    assert checker.check_request(op, "POST", "/x", "application/json", body) == []
    assert checker.check_request(op, "POST", "/x", "application/json", body | {"encryptedInvoiceContent": "**"})
    assert checker.check_request(op, "POST", "/x", "application/json", body | {"invoiceSize": 2**64})


async def test_strict_simulator_records_a_bad_request_and_still_answers_like_ksef() -> None:
    async with KsefSimulator(strict_contract=True) as sim, aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/auth/ksef-token", json={"challenge": "short"}) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["exception"]["exceptionDetailList"][0]["exceptionCode"] == 21405
        assert [v.direction for v in sim.contract_violations] == ["request"]
        assert "contextIdentifier" in sim.contract_violations[0].message


async def test_lax_simulator_records_nothing() -> None:
    async with KsefSimulator() as sim, aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/auth/ksef-token", json={"challenge": "short"}) as resp:
            assert resp.status == 400
        assert sim.contract_violations == []


async def test_a_simulator_bug_is_recorded_as_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_args: object) -> aiohttp.web.Response:
        raise RuntimeError("boom")

    monkeypatch.setitem(app_module._HANDLERS, "post_auth_challenge", broken)
    async with KsefSimulator() as sim, aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/auth/challenge") as resp:
            # the last-resort guard: the documented 400 shape, never a 500
            assert resp.status == 400
            body = await resp.json()
        detail = body["exception"]["exceptionDetailList"][0]
        assert detail["exceptionCode"] == 21405
        assert detail["details"] == ["the simulator failed: RuntimeError"]
        assert sim.internal_errors == ["POST /v2/auth/challenge: RuntimeError('boom')"]


def test_documented_headers_are_checked() -> None:
    checker = ContractChecker()
    op = operation("get_rate_limits")
    body = {"status": {"code": 429, "description": "Too Many Requests", "details": ["wait"]}}
    ok = checker.check_response(
        op, "GET", "/x", status=429, content_type="application/json", body=body, headers={"Retry-After": "3"}
    )
    assert ok == []
    missing = checker.check_response(
        op, "GET", "/x", status=429, content_type="application/json", body=body, headers={}
    )
    assert missing == ["header Retry-After is missing"]
    wrong = checker.check_response(
        op, "GET", "/x", status=429, content_type="application/json", body=body, headers={"Retry-After": "soon"}
    )
    assert wrong == ["header Retry-After: 'soon' is not an integer"]


async def test_test_system_warning_is_echoed_ascii_folded() -> None:
    async with KsefSimulator(strict_contract=True) as sim, aiohttp.ClientSession() as http:
        headers = {"X-Test-System-Warning": "[W1]: Uwaga, zażółć"}
        async with http.post(sim.base_url + "/auth/challenge", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["X-System-Warning"] == "[W1]: Uwaga, zazolc"
        assert sim.contract_violations == []
