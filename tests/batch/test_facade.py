"""`send_batch` / `resume_batch`: the one-call library entry points over an open client."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksef_async import BatchReport, KsefClient, KsefTokenCredentials, resume_batch, send_batch
from ksef_async.testing.invoices import InvoiceFactory

from .conftest import NIP, TOKEN, SimFactory, accepted_per_number, fast_config

pytestmark = pytest.mark.anyio


async def test_send_batch_then_resume_of_a_finished_send_sends_nothing_again(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=2, rate_limits="off")
    invoices = list(InvoiceFactory(NIP, seed=11).iter(40))
    state = tmp_path / "state"
    async with KsefClient(sim.base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP) as client:
        report = await send_batch(client, invoices, state_dir=state, config=fast_config(part_size=100_000))
        assert isinstance(report, BatchReport)
        assert report.all_accepted
        assert report.complete
        assert len(report.entries) == 40
        assert {e.ksef_number for e in report.entries} == set(sim.state.invoices)
        again = await resume_batch(client, state, config=fast_config(part_size=100_000))
    assert again.all_accepted
    assert sorted(e.ksef_number or "" for e in again.entries) == sorted(e.ksef_number or "" for e in report.entries)
    counts = accepted_per_number(sim)
    assert len(counts) == 40
    assert set(counts.values()) == {1}
