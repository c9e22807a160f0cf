"""End-to-end batch sends against the simulator over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from ksef_async.batch.events import (
    BatchEvent,
    InvoicesValidated,
    PartProgress,
    PartRetried,
    PartUploaded,
    SessionPrepared,
)
from ksef_async.testing.invoices import InvoiceFactory, write_invoices
from ksef_async.testing.simulator import KsefSimulator

from .conftest import NIP, TOKEN, SimFactory, accepted_per_number, fast_config, sender_for

pytestmark = pytest.mark.anyio


async def test_send_accepts_every_invoice_once(ksef_simulator_factory: SimFactory, tmp_path: Path) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=1, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 60, NIP, 8, seed=3)
    events: list[BatchEvent] = []
    async with sender_for(sim, tmp_path / "state", fast_config(part_size=50_000), events.append) as sender:
        report = await sender.send([str(p) for p in paths])
    assert report.all_accepted, report.to_json()["summary"]
    assert len(report.entries) == 60
    counts = accepted_per_number(sim)
    assert len(counts) == 60
    assert set(counts.values()) == {1}
    uploaded = [e for e in events if isinstance(e, PartUploaded)]
    assert len(uploaded) > 1
    assert sum(e.delta for e in events if isinstance(e, PartProgress)) == sum(e.size for e in uploaded)


async def test_faults_every_invoice_accepted_exactly_once(ksef_simulator_factory: SimFactory, tmp_path: Path) -> None:
    """10% of part uploads fail, 10% are reset mid-body, and the first close answers 500 after closing."""
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(NIP, TOKEN)],
        seed=7,
        rate_limits="off",
        faults="upload-error=0.1,upload-reset=0.1,close-error=1:1",
    )
    sim.config.max_invoices_per_session = 1500  # GET /limits/context: two sessions
    paths = write_invoices(tmp_path / "in", 3000, NIP, 4, seed=11)
    events: list[BatchEvent] = []
    config = fast_config(part_size=200_000, concurrency=4, validate=False)
    async with sender_for(sim, tmp_path / "state", config, events.append) as sender:
        report = await sender.send(str(tmp_path / "in"))
    assert sim.counters.faults["upload-error"] > 0
    assert sim.counters.faults["upload-reset"] > 0
    assert sim.counters.faults["close-error"] == 1
    summary = report.to_json()["summary"]
    assert summary == {"invoices": 3000, "accepted": 3000, "duplicate": 0, "rejected": 0, "invalid": 0, "unknown": 0}
    counts = accepted_per_number(sim)
    assert len(counts) == 3000
    assert set(counts.values()) == {1}
    # Every report entry names its file, hash, KSeF number and session, and the numbers are the simulator's.
    names = {p.name for p in paths}
    assert {e.file for e in report.entries} == names
    assert {e.ksef_number for e in report.entries} == set(sim.state.invoices)
    assert all(e.sha256 and e.session_reference for e in report.entries)
    retried = [e for e in events if isinstance(e, PartRetried)]
    assert retried, "faults fired, so some part must have been retried"
    # A retry rewinds progress: some delta is negative, and the net equals the bytes uploaded.
    deltas = [e.delta for e in events if isinstance(e, PartProgress)]
    assert sum(deltas) == sum(e.size for e in events if isinstance(e, PartUploaded))
    # No session was closed twice: every session that reached KSeF is final and none is still open.
    assert len({e.session_reference for e in report.entries}) == len(report.sessions) >= 2


async def test_first_session_uploads_while_the_next_is_prepared(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=4, rate_limits="off")
    factory = InvoiceFactory(NIP, seed=41, size_kb=4)
    events: list[BatchEvent] = []
    first_uploaded = anyio.Event()

    def on_event(event: BatchEvent) -> None:
        events.append(event)
        if isinstance(event, PartUploaded) and event.session == 1:
            first_uploaded.set()

    async def invoices() -> AsyncIterator[tuple[str, bytes]]:
        for name, data in factory.iter(200):
            yield name, data
            if any(isinstance(e, SessionPrepared) for e in events):
                # Session 1 is complete; the rest of the input waits until one of its parts is uploaded.
                with anyio.fail_after(20):
                    await first_uploaded.wait()

    # 200 invoices, and the context's batchSession.maxInvoices is 100: two sessions.
    sim.config.max_invoices_per_session = 100
    # One worker reads 8 invoices ahead; worker processes read up to 512 ahead, the whole input here, and the
    # generator could not hold the second session back.
    config = fast_config(part_size=10_000, workers=1)
    async with sender_for(sim, tmp_path / "state", config, on_event) as sender:
        report = await sender.send(invoices())
    assert report.all_accepted
    assert len(report.sessions) == 2
    prepared_all = next(i for i, e in enumerate(events) if isinstance(e, InvoicesValidated))
    uploaded_first = next(i for i, e in enumerate(events) if isinstance(e, PartUploaded) and e.session == 1)
    assert uploaded_first < prepared_all
