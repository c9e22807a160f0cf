"""A response body that does not match its model raises ResponseFormatError naming the fields, never the values."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from ksef_async.errors import KsefError, ResponseFormatError
from ksef_async.models import SessionsQueryResponseItem, SessionStatusResponse
from ksef_async.operations import Operation
from ksef_async.resources._base import Resource, structure_response
from ksef_async.resources.sessions import SessionsResource
from ksef_async.transport import ApiResponse, ApiTransport, StorageTransport

pytestmark = pytest.mark.anyio

SECRET = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"  # a JWT-like value a body may carry
REF = "20250625-SO-2C3E6C8000-B675CF5D68-07"
STATUS = {
    "status": {"code": 200, "description": "Sesja przetworzona pomyślnie"},
    "dateCreated": "2025-06-25T12:00:00+00:00",
    "dateUpdated": "2025-06-25T12:05:00+00:00",
}
ITEM = {
    "referenceNumber": REF,
    "status": {"code": 100, "description": "Sesja otwarta"},
    "dateCreated": "2025-06-25T12:00:00+00:00",
    "dateUpdated": "2025-06-25T12:05:00+00:00",
    "totalInvoiceCount": 1,
    "successfulInvoiceCount": 1,
    "failedInvoiceCount": 0,
}


def _response(body: Any, *, raw: bytes | None = None) -> ApiResponse:
    data = raw if raw is not None else json.dumps(body).encode()
    return ApiResponse(status=200, headers=CIMultiDictProxy(CIMultiDict()), body=data)


class FakeApi:
    """Answers each request with the next queued response and records which operation was called."""

    def __init__(self, responses: Iterable[ApiResponse]) -> None:
        self.responses = list(responses)
        self.calls: list[str] = []

    async def request(self, op: Operation, **_kwargs: Any) -> ApiResponse:
        self.calls.append(op.operation_id)
        return self.responses.pop(0)


def _sessions(*responses: ApiResponse) -> tuple[SessionsResource, FakeApi]:
    api = FakeApi(responses)
    # A single-layer unit test of the resources: the transports are stand-ins (storage is never called).
    fake_api: ApiTransport = api  # type: ignore[assignment]
    storage: StorageTransport = object()  # type: ignore[assignment]
    return SessionsResource(fake_api, storage), api


def _assert_no_value(error: ResponseFormatError, *values: str) -> None:
    text = str(error) + repr(error) + repr(error.problems)
    for value in values:
        assert value not in text
    # The cattrs error quotes the values in its sub-exceptions: it must not ride along in the traceback.
    assert error.__cause__ is None
    assert error.__context__ is None


async def test_wrong_type_names_operation_and_nested_path_not_value() -> None:
    body = {**STATUS, "status": {"code": SECRET, "description": "ok"}}
    resource, api = _sessions(_response(body))
    with pytest.raises(ResponseFormatError) as info:
        await resource.status(REF)
    error = info.value
    assert isinstance(error, KsefError)
    assert api.calls == ["get_sessions_by_reference_number"]
    assert error.operation == "get_sessions_by_reference_number"
    assert error.problems == ("$.status.code: expected int",)
    assert str(error).startswith("get_sessions_by_reference_number: unexpected response format: $.status.code")
    _assert_no_value(error, SECRET)


async def test_missing_fields_are_each_listed() -> None:
    resource, _ = _sessions(_response({"dateCreated": SECRET}))
    with pytest.raises(ResponseFormatError) as info:
        await resource.status(REF)
    problems = info.value.problems
    assert "$.status: required field missing" in problems
    assert "$.date_updated: required field missing" in problems
    assert "$.date_created: expected datetime" in problems
    _assert_no_value(info.value, SECRET)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html>" + SECRET.encode(), "$: body is not JSON"),  # e.g. a proxy's error page
        (b"", "$: expected SessionStatusResponse (an object), got null"),
        (json.dumps([SECRET]).encode(), "$: expected SessionStatusResponse (an object), got array"),
        (json.dumps(SECRET).encode(), "$: expected SessionStatusResponse (an object), got string"),
    ],
)
async def test_a_body_that_is_not_a_json_object(raw: bytes, problem: str) -> None:
    resource, _ = _sessions(_response(None, raw=raw))
    with pytest.raises(ResponseFormatError) as info:
        await resource.status(REF)
    assert info.value.problems == (problem,)
    _assert_no_value(info.value, SECRET, "<html>")


async def test_a_bad_later_page_raises_after_the_good_pages() -> None:
    first = {"continuationToken": "page-2", "sessions": [ITEM]}
    second = {"sessions": [{**ITEM, "totalInvoiceCount": SECRET}]}
    resource, api = _sessions(_response(first), _response(second))
    items = resource.list("Online")
    first_item: SessionsQueryResponseItem = await anext(items)
    assert first_item.reference_number == REF
    with pytest.raises(ResponseFormatError) as info:
        await anext(items)
    assert api.calls == ["get_sessions", "get_sessions"]
    assert info.value.operation == "get_sessions"
    assert info.value.problems == ("$.sessions[0].total_invoice_count: expected int",)
    _assert_no_value(info.value, SECRET)


async def test_a_matching_body_still_structures() -> None:
    resource, _ = _sessions(_response(STATUS))
    status = await resource.status(REF)
    assert status.status.code == 200


async def test_resources_that_send_themselves_share_the_helper() -> None:
    api = FakeApi([_response({**STATUS, "invoiceCount": "many"})])

    class Probe(Resource):
        async def fetch(self) -> SessionStatusResponse:
            return self._structure(
                "probe_op", await self._send("get_sessions_by_reference_number"), SessionStatusResponse
            )

    probe = Probe(api, object())  # type: ignore[arg-type]
    with pytest.raises(ResponseFormatError, match=r"^probe_op: .*\$\.invoice_count: expected int"):
        await probe.fetch()


def test_structure_response_is_usable_without_a_resource() -> None:
    # For modules that structure bodies outside a Resource (the authenticator, the simulator client ...).
    with pytest.raises(ResponseFormatError) as info:
        structure_response("get_sessions", {"sessions": SECRET}, SessionStatusResponse)
    assert info.value.operation == "get_sessions"
    assert "$.status: required field missing" in info.value.problems
    _assert_no_value(info.value, SECRET)
