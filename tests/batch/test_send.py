"""End-to-end batch sends against the simulator over loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksef_async.batch.events import BatchEvent, PartProgress, PartUploaded
from ksef_async.testing.invoices import write_invoices
from ksef_async.testing.simulator import KsefSimulator

from .conftest import NIP, TOKEN, accepted_per_number, fast_config, sender_for

pytestmark = pytest.mark.anyio


async def test_send_accepts_every_invoice_once(ksef_simulator_factory, tmp_path: Path) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=1, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 60, NIP, 8, seed=3)
    events: list[BatchEvent] = []
    async with sender_for(sim, tmp_path / "state", fast_config(part_size=50_000), events.append) as sender:
        report = await sender.send([str(p) for p in paths])
    assert report.all_accepted, report.to_json()["summary"]
    assert len(report.entries) == 60
    counts = accepted_per_number(sim)
    assert len(counts) == 60 and set(counts.values()) == {1}
    uploaded = [e for e in events if isinstance(e, PartUploaded)]
    assert len(uploaded) > 1
    assert sum(e.delta for e in events if isinstance(e, PartProgress)) == sum(e.size for e in uploaded)
