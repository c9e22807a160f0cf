"""The sync summary lists the ``X-System-Warning`` warnings KSeF sent during the run (loopback simulator)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ksef_async.client import KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.retrieval.sync import sync_invoices
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret

from .conftest import NIP

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::ksef_async.transport.KsefSystemWarning")]

DAY = dt.timedelta(days=1)
FAST_POLL = Backoff(initial=0.05, factor=1.5, maximum=0.5)


async def test_the_sync_summary_lists_the_warnings_of_the_run(
    sim: KsefSimulator, client: KsefClient, tmp_path: Path
) -> None:
    now = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, 30, now - 5 * DAY, now - DAY, seed=4)
    await client.login()
    sim.config.system_warning = "[S1]: export notice"
    before = sim.counters.system_warnings
    first = await sync_invoices(client.retrieval, tmp_path / "out", since=now - 6 * DAY, backoff=FAST_POLL)
    during = sim.counters.system_warnings - before
    assert first.invoices_written == 30
    (tally,) = first.system_warnings
    assert (tally.code, tally.message) == ("S1", "export notice")
    assert tally.count == first.system_warning_count == during
    assert during >= 2  # export request and status polls at least
    assert tally.first.operation == "post_invoices_exports"
    summary = first.to_json()["systemWarnings"]
    assert summary == {"count": during, "distinct": [tally.to_json()]}

    # A run without warnings reports none, and what the first run saw stays in its own summary.
    sim.config.system_warning = None
    second = await sync_invoices(client.retrieval, tmp_path / "out", backoff=FAST_POLL)
    assert second.system_warnings == ()
    assert second.system_warning_count == 0
    assert first.system_warning_count == during
