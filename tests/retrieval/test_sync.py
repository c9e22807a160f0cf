"""Incremental HWM sync against the simulator: complete, exactly once on disk, resumable, budget-aware."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from ksef_async.client import KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import ConfigurationError
from ksef_async.resources.limits import window_limits
from ksef_async.retrieval.export import ExportedInvoice
from ksef_async.retrieval.sync import (
    CHECKPOINT_FILE,
    INDEX_FILE,
    InvoiceDirectory,
    JsonCheckpointStore,
    SyncReport,
    sync_invoices,
)
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret

from .conftest import GENEROUS, NIP

DAY = dt.timedelta(days=1)
FAST_POLL = Backoff(initial=0.05, factor=1.5, maximum=0.5)
"""The simulator finishes an export in a second or two; the default back-off is tuned for KSeF's minutes."""


def on_disk(outdir: Path) -> list[str]:
    """KSeF numbers of the XML files, and a check that the index lists each exactly once."""
    files = sorted(p.stem for p in outdir.glob("*.xml"))
    lines = [json.loads(line) for line in (outdir / INDEX_FILE).read_text("utf-8").splitlines()]
    indexed = [entry["ksefNumber"] for entry in lines]
    assert len(indexed) == len(set(indexed)), "an invoice is indexed twice"
    assert sorted(indexed) == files
    return files


def final_below(sim: KsefSimulator, report: SyncReport) -> list[str]:
    """Invoices stored at or below the HWM the run reached (the simulated clock also follows wall time, so the
    simulator's HWM keeps moving after the run)."""
    mark = report.subjects[0].checkpoint_after
    assert mark is not None
    return sorted(n for n, inv in sim.state.invoices.items() if inv.permanent_storage_date <= mark)


@pytest.mark.anyio
async def test_repeated_runs_keep_exactly_the_final_invoices_on_disk_each_once(
    sim: KsefSimulator, client: KsefClient, tmp_path: Path
) -> None:
    now = sim.clock.now_dt()
    since = now - 151 * DAY
    # 25,000 received invoices over 5 months; the last 50 are younger than the 600-s permanent-storage lag.
    simret.seed_invoices(sim, NIP, 24_950, now - 150 * DAY, now - DAY, seed=1)
    simret.seed_invoices(sim, NIP, 50, now - dt.timedelta(seconds=500), now - dt.timedelta(seconds=2), seed=2)
    out = tmp_path / "invoices"

    first = await sync_invoices(client.retrieval, out, since=since, backoff=FAST_POLL)
    expected = final_below(sim, first)
    assert 24_950 <= len(expected) < 25_000  # the lagging ones are not final yet
    assert on_disk(out) == expected
    sub = first.subjects[0]
    assert sub.truncated_packages >= 2  # 10,000-invoice packages were continued
    assert sub.invoices_written == len(expected)
    assert sub.checkpoint_after is not None
    assert sub.checkpoint_after > now - dt.timedelta(seconds=2)
    for n in expected[:50]:
        assert (out / f"{n}.xml").read_bytes() == sim.state.invoices[n].content

    # New invoices arrive; time passes; the lagging ones reach permanent storage.
    sim.clock.advance(400)
    t = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, 30, t - dt.timedelta(seconds=1), t, seed=3)
    second = await sync_invoices(client.retrieval, out, backoff=FAST_POLL)
    after_second = on_disk(out)
    assert after_second == final_below(sim, second)
    assert second.invoices_written == len(after_second) - len(expected)
    assert second.exports == 1

    sim.clock.advance(1_000)
    third = await sync_invoices(client.retrieval, out, backoff=FAST_POLL)
    assert on_disk(out) == sorted(sim.state.invoices) == final_below(sim, third)
    assert len(on_disk(out)) == 25_030
    assert third.invoices_written == 25_030 - len(after_second)
    # Nothing new: the export answers 420 (from after the HWM) or an empty package; nothing is written twice.
    fourth = await sync_invoices(client.retrieval, out, backoff=FAST_POLL)
    assert fourth.invoices_written == 0
    assert len(on_disk(out)) == 25_030


@pytest.mark.anyio
async def test_a_crash_between_writing_and_checkpointing_loses_and_duplicates_nothing(
    sim: KsefSimulator, client: KsefClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simret.settings(sim).max_package_invoices = 40
    now = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, 130, now - 20 * DAY, now - DAY)
    out = tmp_path / "out"
    saves = 0
    original_save = JsonCheckpointStore.save

    def crash_on_second_save(self: JsonCheckpointStore, subject: str, checkpoint: dt.datetime) -> None:
        nonlocal saves
        saves += 1
        if saves == 2:
            raise RuntimeError("simulated crash after the invoices were written")
        original_save(self, subject, checkpoint)

    monkeypatch.setattr(JsonCheckpointStore, "save", crash_on_second_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await sync_invoices(client.retrieval, out, since=now - 21 * DAY, backoff=FAST_POLL)
    # Two packages written, one checkpoint saved; the second package began with the first one's last invoice
    # (ranges are inclusive), which was skipped.
    assert len(on_disk(out)) == 79
    monkeypatch.setattr(JsonCheckpointStore, "save", original_save)
    report = await sync_invoices(client.retrieval, out, backoff=FAST_POLL)
    assert on_disk(out) == final_below(sim, report)
    assert report.duplicates_skipped >= 40  # the second package came again and was skipped


def test_directory_repairs_a_torn_index_line_and_removes_temporary_files(tmp_path: Path) -> None:
    meta: dict[str, Any] = {"ksefNumber": "A"}
    first = InvoiceDirectory(tmp_path)
    invoice = ExportedInvoice("5265877635-20260101-0123456789AB-00", b"<x/>", None, meta)  # type: ignore[arg-type]
    assert first.write([invoice], "Subject2") == (1, 0)
    with (tmp_path / INDEX_FILE).open("ab") as fh:
        fh.write(b'{"ksefNumber": "torn')  # a kill -9 in the middle of an append
    (tmp_path / ".other.xml.tmp").write_bytes(b"partial")
    again = InvoiceDirectory(tmp_path)
    assert again.indexed == {invoice.ksef_number}
    assert not list(tmp_path.glob(".*.tmp"))
    assert again.write([invoice], "Subject2") == (0, 1)
    assert (tmp_path / INDEX_FILE).read_bytes().count(b"\n") == 1


def test_checkpoint_store_round_trip_and_bad_files(tmp_path: Path) -> None:
    store = JsonCheckpointStore(tmp_path / CHECKPOINT_FILE)
    assert store.load("Subject2") is None
    moment = dt.datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=dt.UTC)
    store.save("Subject2", moment)
    store.save("Subject1", moment + DAY)
    assert store.load("Subject2") == moment
    assert JsonCheckpointStore(tmp_path / CHECKPOINT_FILE).load("Subject1") == moment + DAY
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match=r"bad\.json"):
        JsonCheckpointStore(tmp_path / "bad.json").load("Subject2")


@pytest.mark.anyio
async def test_budget_pacing_and_first_run_needs_since(sim: KsefSimulator, client: KsefClient, tmp_path: Path) -> None:
    simret.settings(sim).max_package_invoices = 10
    now = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, 45, now - 10 * DAY, now - DAY)
    out = tmp_path / "out"
    with pytest.raises(ConfigurationError, match="since"):
        await sync_invoices(client.retrieval, out, backoff=FAST_POLL)
    partial = await sync_invoices(client.retrieval, out, since=now - 11 * DAY, export_budget=2, backoff=FAST_POLL)
    assert partial.subjects[0].stopped_by_budget is True
    assert partial.exports == 2
    assert len(on_disk(out)) == 19  # 10 + 10, the boundary invoice shared by the two packages once
    # KSeF allows 2 exports per second here; the client's limiter (which reads GET /rate-limits at login) paces
    # the 3 remaining exports instead of running into 429s.
    sim.rate_limiter.set_limits({"invoiceExport": WindowLimits(1, 100, 100)} | {"invoiceMetadata": GENEROUS})
    client.limiter.update_limits(window_limits(await client.rate_limits.get()))  # what a new login does
    rest = await sync_invoices(client.retrieval, out, backoff=FAST_POLL)
    assert on_disk(out) == final_below(sim, rest)
    assert rest.exports >= 3
    assert sim.counters.rate_limited == 0
    assert rest.subjects[0].waited_seconds >= 1.5
