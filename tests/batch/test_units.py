"""Unit tests of the engine's parts that need no server: result matching, report, events, upload records."""

from __future__ import annotations

import base64
import datetime as dt
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest

from ksef_async.batch.events import EventStream, PartProgress, StageFinished
from ksef_async.batch.reconcile import build_report, match_results, outcome_of
from ksef_async.batch.resume import (
    UploadRecord,
    default_state_dir,
    read_upload_record,
    write_upload_record,
)
from ksef_async.batch.upload import PartRequest
from ksef_async.core.plan import BatchPlan, FormKey, InvoiceEntry, OutcomeStatus, SessionPlan
from ksef_async.errors import ConfigurationError, InvoiceProblem, ProtocolError
from ksef_async.models import SessionInvoiceStatusResponse
from ksef_async.models.converter import structure

FA3 = FormKey("FA (3)", "1-0E", "FA")
SIGNED = "https://storage.example/batch-parts/1?sv=2025&se=2026-01-01T00%3A00%3A00Z&sp=w&sig=SECRETSIG"


def _session() -> SessionPlan:
    invoices = tuple(InvoiceEntry(f"f{i}.xml", _hash(f"hash{i}"), 100, FA3) for i in range(3))
    return SessionPlan(1, FA3, invoices, reference_number="20260101-SB-X")


def _status(code: int, **extra: object) -> dict[str, object]:
    return {"code": code, "description": f"d{code}", **extra}


def _hash(text: str) -> str:
    """A Base64 stand-in for an invoice hash (the plan keeps Base64 text)."""
    return base64.b64encode(text.encode()).decode()


def _item(**fields: Any) -> SessionInvoiceStatusResponse:
    """One ``SessionInvoiceStatusResponse`` as the resource structures it, with the required fields filled in."""
    body: dict[str, Any] = {
        "ordinalNumber": 1,
        "referenceNumber": "20260101-EE-0000000000-0000000000-00",
        "invoiceHash": _hash("none"),
        "invoicingDate": "2026-01-01T00:00:00+00:00",
        **fields,
    }
    return structure(body, SessionInvoiceStatusResponse)


def test_results_match_by_name_then_hash_never_by_ordinal() -> None:
    session = _session()
    items = [
        # Ordinal numbers deliberately disagree with archive order (KSeF issue #267).
        _item(ordinalNumber=3, invoiceFileName="f0.xml", invoiceHash=_hash("hash0"), ksefNumber="K0",
              status=_status(200)),
        # A result under an unknown name is matched by its hash.
        _item(ordinalNumber=1, invoiceFileName="renamed.xml", invoiceHash=_hash("hash1"), ksefNumber="K1",
              status=_status(200)),
        # A name whose hash disagrees is not trusted: the hash decides (here: f2's hash).
        _item(ordinalNumber=2, invoiceFileName="f0.xml", invoiceHash=_hash("hash2"),
              status=_status(450, details=["P_2 is wrong"])),
        _item(invoiceFileName="ghost.xml", invoiceHash=_hash("nothing"), status=_status(200), ksefNumber="K9"),
    ]  # fmt: skip
    matched, counts = match_results(session, items)
    outcomes = [i.outcome for i in matched.invoices]
    assert outcomes[0] is not None
    assert outcomes[0].ksef_number == "K0"
    assert outcomes[1] is not None
    assert outcomes[1].ksef_number == "K1"
    assert outcomes[2] is not None
    assert outcomes[2].status is OutcomeStatus.REJECTED
    assert outcomes[2].details == ("P_2 is wrong",)
    assert (counts.accepted, counts.rejected, counts.pending, counts.unmatched) == (2, 1, 0, 1)


def test_duplicate_reports_the_original_number_and_pending_is_not_final() -> None:
    duplicate = outcome_of(
        _item(status=_status(440, extensions={"originalKsefNumber": "ORIG", "originalSessionReferenceNumber": "S"}))
    )
    assert duplicate is not None
    assert duplicate.status is OutcomeStatus.DUPLICATE
    assert duplicate.ksef_number == "ORIG"
    assert outcome_of(_item(status=_status(150))) is None
    assert outcome_of(_item(status=_status(100))) is None


def test_report_has_one_entry_per_input_and_exit_semantics() -> None:
    session, _ = match_results(
        _session(),
        [
            _item(invoiceFileName="f0.xml", invoiceHash=_hash("hash0"), ksefNumber="K0", status=_status(200)),
            _item(invoiceFileName="f1.xml", invoiceHash=_hash("hash1"), status=_status(440, extensions={
                "originalKsefNumber": "OLD"})),
        ],
    )  # fmt: skip
    plan = BatchPlan((session,), skipped=(InvoiceProblem("/in/bad.xml", "not XML", 1, "xml"),))
    report = build_report(plan)
    data = report.to_json()
    assert [e["outcome"] for e in data["invoices"]] == ["accepted", "duplicate", "unknown", "invalid"]
    assert data["invoices"][3]["file"] == "bad.xml"
    assert data["invoices"][3]["source"] == "/in/bad.xml"
    assert data["summary"]["unknown"] == 1
    assert not report.all_accepted
    assert not report.complete


def test_upload_record_is_owner_only_and_secrets_stay_out_of_reprs(tmp_path: Path) -> None:
    deadline = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    request = PartRequest(1, "PUT", SIGNED, {"x-ms-blob-type": "BlockBlob"})
    record = UploadRecord("20260101-SB-X", deadline, (request,))
    assert "SECRETSIG" not in repr(request)
    assert "SECRETSIG" not in repr(record)
    write_upload_record(tmp_path, 1, record)
    path = tmp_path / "s001-upload.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = read_upload_record(tmp_path, 1)
    assert again == record
    assert again.request(1).url == SIGNED
    with pytest.raises(ProtocolError) as missing:
        again.request(2)
    assert (missing.value.operation, missing.value.field) == ("post_sessions_batch", "$.partUploadRequests")
    assert read_upload_record(tmp_path, 2) is None
    path.write_text("{}")
    with pytest.raises(ConfigurationError, match="malformed"):
        read_upload_record(tmp_path, 1)


def test_default_state_dir_follows_xdg_cache_home(tmp_path: Path) -> None:
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=dt.UTC)
    path = default_state_dir(environ={"XDG_CACHE_HOME": str(tmp_path)}, now=lambda: moment)
    assert path == tmp_path / "ksef-async" / "20260304T050607.890000Z"
    home = default_state_dir(environ={}, now=lambda: moment)
    assert home == Path.home() / ".cache" / "ksef-async" / "20260304T050607.890000Z"


@pytest.mark.anyio
async def test_event_stream_yields_events_in_order_until_closed() -> None:
    stream = EventStream()
    seen: list[object] = []

    async def consume() -> None:
        seen.extend([event async for event in stream])

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        stream.emit(PartProgress(1, 1, 10))
        stream.emit(PartProgress(1, 1, -10))
        stream.emit(StageFinished("upload", 1.0))
        stream.close()
    stream.emit(StageFinished("late", 0.0))  # dropped after close, never raises
    assert seen == [PartProgress(1, 1, 10), PartProgress(1, 1, -10), StageFinished("upload", 1.0)]


def test_stage_time_is_the_union_of_overlapping_session_intervals() -> None:
    from ksef_async.batch.engine import _Stages  # noqa: PLC0415 - the private timer, tested directly

    now = [0.0]
    emitted: list[object] = []
    stages = _Stages(lambda: now[0], emitted.append)
    # Session 1 uploads from 0 to 4, session 2 from 2 to 6, session 3 from 10 to 11: busy 7 s, not 11 s.
    for start, end in ((0.0, 4.0), (2.0, 6.0), (10.0, 11.0)):
        now[0] = start
        with stages.timed("upload"):
            now[0] = end
    assert stages.seconds() == {"upload": 7.0}
    assert emitted[-1] == StageFinished("upload", 7.0)
