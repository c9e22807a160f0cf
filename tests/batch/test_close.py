"""Close reconciliation against a scripted one-layer fake: an unclear close is checked before it is repeated."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from ksef_async.batch.engine import BatchClient, BatchSender
from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, MfPublicKey, b64
from ksef_async.core.system_warnings import SystemWarningLog
from ksef_async.errors import AmbiguousRequestError, ApiErrorDetail, BadRequestError
from ksef_async.models import (
    OpenBatchSessionRequest,
    OpenBatchSessionResponse,
    PartUploadRequest,
    SessionInvoiceStatusResponse,
    SessionStatusResponse,
)
from ksef_async.models.converter import structure
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator.keys import MfKey

from .conftest import NIP, fast_config

pytestmark = pytest.mark.anyio
NOW = "2026-01-01T00:00:00+00:00"


class ScriptedApi:
    """The client's resources, typed, whose close answers follow a script; the session is open (100) until a close
    takes effect."""

    def __init__(self, close_script: list[str], invoices: list[tuple[str, bytes]], *, refuse_uploads: int = 0) -> None:
        mf = MfKey.generate(KEY_USAGE_SYMMETRIC, bits=2048, now=dt.datetime.now(dt.UTC))
        raw = mf.to_json()
        self.key = MfPublicKey.from_api(
            raw["certificate"],
            mf.certificate.not_valid_before_utc,
            mf.certificate.not_valid_after_utc,
            raw["usage"],
            raw["publicKeyId"],
        )
        self.script = list(close_script)
        self.invoices_sent = [(name, b64(hashlib.sha256(data).digest())) for name, data in invoices]
        self.closed = False
        self.close_calls = 0
        self.uploads = 0
        self.opens = 0
        self.refuse_uploads = refuse_uploads

        self.system_warnings = SystemWarningLog()
        # One object stands in for every resource the engine uses.
        self.batch = self.sessions = self.security = self.limits = self

    async def public_key(self, usage: str) -> MfPublicKey:
        assert usage == KEY_USAGE_SYMMETRIC
        return self.key

    async def open_prepared(
        self, request: OpenBatchSessionRequest, *, features: Iterable[str] | None = None
    ) -> OpenBatchSessionResponse:
        self.opens += 1
        return structure(
            {
                "referenceNumber": "20260101-SB-0000000000-0000000000-00",
                "partUploadRequests": [
                    {"ordinalNumber": p.ordinal_number, "method": "PUT",
                     "url": f"https://s/{p.ordinal_number}?sig=S", "headers": {"x-ms-blob-type": "BlockBlob"}}
                    for p in request.batch_file.file_parts
                ],
            },
            OpenBatchSessionResponse,
        )  # fmt: skip

    async def upload_part(self, request: PartUploadRequest, body: bytes | BinaryIO, size: int) -> int:
        assert request.method == "PUT"
        assert not isinstance(body, bytes)
        assert len(body.read()) == size
        if self.refuse_uploads:
            self.refuse_uploads -= 1
            raise BadRequestError(400, [ApiErrorDetail(None, "InvalidHeaderValue")])
        self.uploads += 1
        return 201

    async def close(self, reference_number: str) -> None:
        self.close_calls += 1
        step = self.script.pop(0)
        if step in {"ok", "lost-after"}:
            self.closed = True
        if step.startswith("lost"):
            raise AmbiguousRequestError("post_sessions_batch_close: no answer from KSeF (timeout)")
        if step == "21205":
            raise BadRequestError(400, [ApiErrorDetail(21205, "a declared part was not uploaded")])

    async def status(self, reference_number: str) -> SessionStatusResponse:
        code = 200 if self.closed else 100
        return structure(
            {
                "status": {"code": code, "description": f"status {code}"},
                "dateCreated": NOW,
                "dateUpdated": NOW,
                "upo": {"pages": []},
            },
            SessionStatusResponse,
        )

    async def invoices(
        self, reference_number: str, *, page_size: int | None = None
    ) -> AsyncIterator[SessionInvoiceStatusResponse]:
        if not self.closed:
            return
        for number, (name, sha) in enumerate(self.invoices_sent):
            yield structure(
                {"ordinalNumber": number + 1, "referenceNumber": f"R{number}", "invoiceFileName": name,
                 "invoiceHash": sha, "ksefNumber": f"K{number}", "invoicingDate": NOW,
                 "status": {"code": 200, "description": "ok"}},
                SessionInvoiceStatusResponse,
            )  # fmt: skip

    async def failed_invoices(
        self, reference_number: str, *, page_size: int | None = None
    ) -> AsyncIterator[SessionInvoiceStatusResponse]:
        return
        yield  # an async generator that yields nothing

    async def download_upo(self, url: str) -> bytes:
        raise AssertionError("no UPO pages are listed")

    async def upo(self, reference_number: str, upo_reference_number: str) -> bytes:
        raise AssertionError("no UPO pages are listed")


def _sender(api: ScriptedApi, tmp_path: Path) -> BatchSender:
    async def no_wait(_seconds: float) -> None:
        return None

    config = fast_config(use_context_limits=False)
    return BatchSender(cast("BatchClient", api), tmp_path / "state", config, sleep=no_wait)


async def _send(tmp_path: Path, script: list[str]) -> tuple[ScriptedApi, bool]:
    items = list(InvoiceFactory(NIP, seed=51, size_kb=4).iter(5))
    api = ScriptedApi(script, items)
    sender = _sender(api, tmp_path)
    report = await sender.send(items)
    return api, report.all_accepted


async def test_close_lost_before_it_took_effect_is_repeated(tmp_path: Path) -> None:
    api, accepted = await _send(tmp_path, ["lost-before", "ok"])
    assert accepted
    assert api.close_calls == 2  # the status said 100 (still open), so the close was sent again


async def test_close_lost_after_it_took_effect_is_never_repeated(tmp_path: Path) -> None:
    api, accepted = await _send(tmp_path, ["lost-after"])
    assert accepted
    assert api.close_calls == 1  # the status said it was closed: a second close could only do harm


async def test_close_racing_the_last_part_21205_is_retried(tmp_path: Path) -> None:
    api, accepted = await _send(tmp_path, ["21205", "ok"])
    assert accepted
    assert api.close_calls == 2


async def test_a_session_failed_mid_upload_is_finished_by_resume(tmp_path: Path) -> None:
    items = list(InvoiceFactory(NIP, seed=52, size_kb=4).iter(5))
    api = ScriptedApi(["ok"], items, refuse_uploads=1)
    first = await _sender(api, tmp_path).send(items)
    assert not first.all_accepted
    assert {e.outcome for e in first.entries} == {"unknown"}
    error = first.entries[0].error
    assert error is not None
    assert "BadRequestError" in str(error["description"])
    assert api.close_calls == 0  # a session with a missing part is never closed
    again = await _sender(api, tmp_path).resume()
    assert again.all_accepted
    assert api.opens == 1  # the same session, still open and in its window, was finished
    assert api.close_calls == 1
