"""Answers the 2.9.0 spec fixes that an independent Schemathesis run found the simulator getting wrong.

Each test talks to a simulator in strict contract mode over a loopback socket, as a client would.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from ksef_async.core.identifiers import generate_ksef_number
from ksef_async.operations import operation
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.contract import ContractChecker

from .conftest import NIP, Api

pytestmark = pytest.mark.anyio

_REF = "20260101-SO-0000000000-0000000000-00"


def _ksef_number() -> str:
    return generate_ksef_number(NIP, dt.date(2026, 1, 2), random.Random(7))


def _error(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict), body
    detail: dict[str, Any] = body["exception"]["exceptionDetailList"][0]
    return detail


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/auth/challenge", "POST"),
        ("GET", "/auth/challenge", "POST"),  # not GET /auth/{referenceNumber} with "challenge"
        ("GET", "/sessions/online", "POST"),
        ("TRACE", "/sessions/batch", "POST"),
        ("GET", "/auth/ksef-token", "POST"),
        ("GET", "/auth/sessions/current", "DELETE"),
        ("OPTIONS", "/auth/20260101-AU-0000000000-0000000000-00", "GET"),
    ],
)
async def test_a_concrete_path_allows_only_its_own_methods(api: Api, method: str, path: str, allow: str) -> None:
    # OpenAPI 3.0 Paths Object: concrete paths are matched before templated ones.
    async with api.http.request(method, api.base + path) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == allow


async def test_templated_and_concrete_paths_still_serve_their_own_methods(api: Api) -> None:
    status, _, _ = await api.call("POST", "/auth/challenge")
    assert status == 200
    status, _, _ = await api.call("GET", "/auth/sessions")  # concrete GET beside GET /auth/{referenceNumber}
    assert status == 401


async def test_missing_sub_resources_answer_codes_their_tables_list(api: Api) -> None:
    await api.login()
    # DELETE /auth/sessions/{referenceNumber}: the table lists only 21405 (21304 was answered).
    status, body, _ = await api.call("DELETE", "/auth/sessions/20260101-AU-0000000000-0000000000-00")
    assert (status, _error(body)["exceptionCode"]) == (400, 21405)
    # GET /sessions/{ref}/invoices/{invoiceRef} and .../upo: only 21405 (21173 was answered).
    for path in (f"/sessions/{_REF}/invoices/{_REF}", f"/sessions/{_REF}/invoices/{_REF}/upo"):
        status, body, _ = await api.call("GET", path)
        assert (status, _error(body)["exceptionCode"]) == (400, 21405), path
    # GET /sessions/{ref}/invoices/ksef/{ksefNumber}/upo: 21178 with the table's wording (21173 was answered).
    number = _ksef_number()
    status, body, _ = await api.call("GET", f"/sessions/{_REF}/invoices/ksef/{number}/upo")
    error = _error(body)
    assert (status, error["exceptionCode"]) == (400, 21178)
    assert error["exceptionDescription"] == "Nie znaleziono UPO dla podanych kryteriów."
    assert error["details"] == [
        f"UPO o numerze KSeF {number} i numerze referencyjnym sesji {_REF} nie zostało znalezione."
    ]
    # GET /sessions/{referenceNumber} lists 21173: its description and details as the table words them.
    status, body, _ = await api.call("GET", f"/sessions/{_REF}")
    error = _error(body)
    assert (status, error["exceptionCode"]) == (400, 21173)
    assert error["exceptionDescription"] == "Brak sesji o wskazanym numerze referencyjnym."
    assert error["details"] == [f"Sesja o numerze referencyjnym {_REF} nie została znaleziona."]


async def test_a_listed_code_carries_the_description_of_the_operations_table(api: Api) -> None:
    await api.login()
    request = {
        "formCode": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
        "encryption": {
            "encryptedSymmetricKey": "AAAA",
            "initializationVector": "AAAAAAAAAAAAAAAAAAAAAA==",
            "publicKeyId": "A" * 43 + "=",
        },
    }
    status, body, _ = await api.call("POST", "/sessions/online", json=request)
    error = _error(body)
    assert (status, error["exceptionCode"]) == (400, 21470)
    assert (
        error["exceptionDescription"] == "Przesłany identyfikator klucza jest nieznany lub wskazuje na wycofany klucz."
    )


def test_strict_mode_flags_undocumented_codes_and_descriptions() -> None:
    checker = ContractChecker()
    op = operation("delete_auth_sessions_by_reference_number")

    def answer(code: int, description: str) -> dict[str, Any]:
        detail = {"exceptionCode": code, "exceptionDescription": description, "details": None}
        return {"exception": {"exceptionDetailList": [detail], "timestamp": "2026-01-01T00:00:00Z"}}

    problems = checker.check_response(
        op, "DELETE", "/v2/auth/sessions/x", status=400, content_type="application/json", body=answer(21304, "x")
    )
    assert any("21304 is not documented" in p for p in problems)
    problems = checker.check_response(
        op, "DELETE", "/v2/auth/sessions/x", status=400, content_type="application/json", body=answer(21405, "Zły.")
    )
    assert any("the spec says 'Błąd walidacji danych wejściowych.'" in p for p in problems)
    good = answer(21405, "Błąd walidacji danych wejściowych.")
    assert not checker.check_response(
        op, "DELETE", "/v2/auth/sessions/x", status=400, content_type="application/json", body=good
    )


async def test_an_optional_body_left_out(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    # The body schema requires nothing (EntityPermissionsQueryRequest, QueryCertificatesRequest): runs unfiltered.
    for path in ("/permissions/query/entities/grants", "/certificates/query"):
        status, body, _ = await api.call("POST", path)
        assert status == 200, (path, body)
    # GenerateTokenRequest requires permissions and description: still 21405 naming the body.
    status, body, _ = await api.call("POST", "/tokens")
    error = _error(body)
    assert (status, error["exceptionCode"]) == (400, 21405)
    assert error["details"] == ["body: required (application/json)"]
    violations = [str(v) for v in ksef_simulator.contract_violations]
    assert violations == ["request POST /v2/tokens: request Content-Type '' not among ['application/json']"]
    ksef_simulator.runtime.contract.violations.clear()  # type: ignore[union-attr]  # sent on purpose


async def test_collective_identifier_queries_take_what_the_schema_allows(
    api: Api, ksef_simulator: KsefSimulator
) -> None:
    await api.login()
    # CollectiveIdentifierInvoicesQueryRequest: at most 10 numbers, no minimum.
    status, body, _ = await api.call(
        "POST", "/collective-identifiers/invoices", json={"collectiveIdentifierNumbers": []}
    )
    assert (status, body["invoices"]) == (200, [])
    # A KsefNumber of the right pattern whose CRC-8 does not match names no invoice: no CIs, and 71001 on create.
    good = _ksef_number()
    bad = good[:-2] + ("00" if not good.endswith("00") else "01")
    status, body, _ = await api.call("GET", f"/collective-identifiers/ksef/{bad}")
    assert (status, body["collectiveIdentifiers"]) == (200, [])
    status, body, _ = await api.call(
        "POST", "/collective-identifiers", json={"invoices": [{"ksefNumber": bad}, {"ksefNumber": good}]}
    )
    assert (status, _error(body)["exceptionCode"]) == (400, 71001)
    assert not ksef_simulator.internal_errors
