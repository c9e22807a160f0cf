"""A malformed KSeF answer is one protocol error, whichever path made the call: it names the operation and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.client import KsefClient
from ksef_async.errors import ProtocolError, ResponseFormatError
from ksef_async.testing.invoices import InvoiceFactory

from .conftest import NIP
from .server import HostileServer

pytestmark = pytest.mark.anyio

REF = "20260101-SB-0000000000-0000000000-00"


async def _open_without_upload_requests(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"referenceNumber": REF}, status=201)


async def _status_without_code(_request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {"status": {"description": "?"}, "dateCreated": "2026-01-01T00:00:00Z", "dateUpdated": "2026-01-01T00:00:00Z"}
    )


async def test_batch_open_answer_without_part_upload_requests_is_a_protocol_error(
    hostile: HostileServer, client: KsefClient, tmp_path: Path
) -> None:
    hostile.on("POST", r"/v2/sessions/batch$", _open_without_upload_requests)
    items = list(InvoiceFactory(NIP, seed=61, size_kb=4).iter(3))
    report = await BatchSender(client, tmp_path / "state", SendConfig(max_reopens=0)).send(items)
    assert {e.outcome for e in report.entries} == {"unknown"}
    error = report.entries[0].error
    assert error is not None
    description = str(error["description"])
    # Before the typed path this was a ConfigurationError (exit 2, "bad options") about our own input.
    assert description.startswith("ResponseFormatError: post_sessions_batch: unexpected response format")
    assert "$.part_upload_requests: required field missing" in description
    assert not list((tmp_path / "state").glob("s*-upload.json"))


async def test_a_status_without_a_code_is_a_protocol_error_naming_operation_and_field(
    hostile: HostileServer, client: KsefClient
) -> None:
    hostile.on("GET", r"/v2/sessions/" + REF + "$", _status_without_code)
    with pytest.raises(ProtocolError) as info:
        await client.sessions.status(REF)
    assert isinstance(info.value, ResponseFormatError)
    assert info.value.operation == "get_sessions_by_reference_number"
    assert info.value.field is not None
    assert info.value.field.endswith("code")
