"""Requests that break the spec are refused before any handler runs: 400 21405 naming the field, in every form."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from ksef_async._schemas import schema_path
from ksef_async.operations import OPERATIONS, operation
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.request_validation import RequestValidator, SpecKeywordError

from .conftest import Api

pytestmark = pytest.mark.anyio

_AUTHORIZATION: dict[str, Any] = {
    "subjectIdentifier": {"type": "Nip", "value": "7762811692"},
    "permission": "SelfInvoicing",
    "description": "działanie w imieniu 3393244202 w kontekście 7762811692",
    "subjectDetails": {"fullName": "Firma sp. z o.o."},
}
_PERSON: dict[str, Any] = {
    "subjectIdentifier": {"type": "Pesel", "value": "15062788702"},
    "permissions": ["InvoiceRead"],
    "description": "Opis uprawnienia",
    "subjectDetails": {
        "subjectDetailsType": "PersonByIdentifier",
        "personById": {"firstName": "Adam", "lastName": "A"},
    },
}


def _details(body: Any) -> tuple[int, list[str]]:
    detail = body["exception"]["exceptionDetailList"][0]
    return detail["exceptionCode"], detail["details"]


def test_the_bundled_spec_compiles_for_every_operation() -> None:
    validator = RequestValidator()
    assert {op.operation_id for op in OPERATIONS} <= set(validator._checks)


def test_an_unknown_keyword_fails_the_compilation() -> None:
    spec = json.loads(schema_path("openapi.json").read_text(encoding="utf-8"))
    broken = copy.deepcopy(spec)
    broken["components"]["schemas"]["Nip"]["oneOf"] = [{"type": "string"}]
    with pytest.raises(SpecKeywordError, match="oneOf"):
        RequestValidator(broken)


def test_problems_name_the_field() -> None:
    validator = RequestValidator()
    op = operation("post_permissions_authorizations_grants")
    request = make_mocked_request("POST", "/v2/permissions/authorizations/grants")
    body = _AUTHORIZATION | {"subjectIdentifier": {"type": "Nip", "value": "12345678"}}
    problems = validator.problems(op, request, "application/json", body)
    assert problems == ["body.subjectIdentifier.value: must have at least 9 characters (has 8)"]
    assert validator.problems(op, request, "application/json", _AUTHORIZATION) == []
    assert validator.problems(op, request, None, None) == ["body: required (application/json)"]
    assert validator.problems(op, request, "text/plain", None) == [
        "body: Content-Type 'text/plain' is not accepted (application/json)"
    ]


def test_query_parameters_are_converted_and_checked() -> None:
    validator = RequestValidator()
    op = operation("get_sessions")
    ok = make_mocked_request("GET", "/v2/sessions?sessionType=Batch&pageSize=10&statuses=Succeeded&statuses=Failed")
    assert validator.problems(op, ok, None, None) == []
    bad = make_mocked_request(
        "GET", "/v2/sessions?pageSize=x&statuses=Nope&dateCreatedFrom=2025-01-01T00:00:00", headers={}
    )
    assert validator.problems(op, bad, None, None) == [
        "query pageSize: 'x' is not an integer",
        "query sessionType: is required",
        (
            "query dateCreatedFrom: '2025-01-01T00:00:00' is not a valid date-time (ISO 8601 with a UTC offset, "
            "e.g. 2025-01-31T12:00:00Z)"
        ),
        "query statuses[0]: 'Nope' is not one of InProgress, Succeeded, Failed, Cancelled",
    ]
    too_big = make_mocked_request("GET", "/v2/sessions?sessionType=Online&pageSize=1001")
    assert validator.problems(op, too_big, None, None) == ["query pageSize: 1001 is above the maximum 1000"]


def test_a_trailing_newline_does_not_pass_a_pattern() -> None:
    validator = RequestValidator()
    op = operation("post_testdata_subject")
    request = make_mocked_request("POST", "/v2/testdata/subject")
    body = {"subjectNip": "776281169\n", "subjectType": "VatGroup", "description": "grupa VAT"}
    assert validator.problems(op, request, "application/json", body) == [
        "body.subjectNip: '776281169\\n' does not match ^[1-9]((\\d[1-9])|([1-9]\\d))\\d{7}\\Z"
    ]
    assert validator.problems(op, request, "application/json", body | {"subjectNip": "7762811692"}) == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # issue 18: wrong-length NIPs, an empty lastName, a number and an object among permission types
        (
            "/permissions/authorizations/grants",
            _AUTHORIZATION | {"subjectIdentifier": {"type": "Nip", "value": "12345678"}},
            "body.subjectIdentifier.value",
        ),
        (
            "/permissions/authorizations/grants",
            _AUTHORIZATION | {"subjectIdentifier": {"type": "Nip", "value": "77628116921"}},
            "body.subjectIdentifier.value",
        ),
        (
            "/permissions/persons/grants",
            _PERSON
            | {"subjectDetails": _PERSON["subjectDetails"] | {"personById": {"firstName": "A", "lastName": ""}}},
            "body.subjectDetails.personById.lastName",
        ),
        ("/permissions/query/persons/grants", {"queryType": "PermissionsInCurrentContext", "permissionTypes": [1]}, ""),
        *(
            (f"/permissions/query/{kind}/grants", {"queryType": "Granted", "permissionTypes": [{}]}, "")
            for kind in ("authorizations", "eu-entities", "personal", "persons")
        ),
    ],
)
@pytest.mark.parametrize("problem_details", [False, True])
async def test_invalid_bodies_are_refused_and_not_stored(  # noqa: PLR0917 - parametrized
    api: Api, ksef_simulator: KsefSimulator, path: str, body: Any, field: str, problem_details: bool
) -> None:
    await api.login()
    headers = {"X-Error-Format": "problem-details"} if problem_details else {}
    status, answer, resp_headers = await api.call("POST", path, json=body, headers=headers)
    assert status == 400
    if problem_details:
        assert resp_headers["Content-Type"].startswith("application/problem+json")
        error = answer["errors"][0]
        code, details = error["code"], error["details"]
    else:
        code, details = _details(answer)
    assert code == 21405
    assert details
    assert all(line.startswith("body.") for line in details), details
    if field:
        assert any(line.startswith(field + ":") for line in details), details
    assert ksef_simulator.state.permission_grants == {}
    assert ksef_simulator.internal_errors == []
    ksef_simulator.runtime.contract.violations.clear()  # type: ignore[union-attr]  # sent on purpose


async def test_path_parameters_are_checked(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    status, answer, _ = await api.call("GET", "/sessions/not-a-reference-number")
    assert status == 400
    code, details = _details(answer)
    assert code == 21405
    assert details[0].startswith("path referenceNumber:")
    assert ksef_simulator.contract_violations == []
