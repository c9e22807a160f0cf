"""API 2.9.0 date ranges over loopback: 100-day UTC windows, naive date-times refused, refusals typed, formats."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest

from ksef_async.client import KsefClient
from ksef_async.core.crypto import SessionKey
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError, DateRangeRefusedError, NaiveDateTimeError, ResponseFormatError
from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters
from ksef_async.retrieval.export import download_package, export_invoices
from ksef_async.retrieval.query import MAX_WINDOW, iter_metadata
from ksef_async.retrieval.sync import INDEX_FILE, sync_invoices
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret

from .conftest import NIP

pytestmark = pytest.mark.anyio

DAY = dt.timedelta(days=1)
FAST_POLL = Backoff(initial=0.05, factor=1.5, maximum=0.5)


def filters(start: dt.datetime, end: dt.datetime | None = None, **extra: Any) -> InvoiceQueryFilters:
    return InvoiceQueryFilters(
        subject_type="Subject2",
        date_range=InvoiceQueryDateRange(date_type="PermanentStorage", from_=start, to=end, **extra),
    )


def ranges(sim: KsefSimulator, kind: str) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(low, high) for k, low, high in sim.counters.date_ranges if k == kind]


async def test_a_120_day_sync_exports_every_invoice_once_in_windows_of_at_most_100_days(
    sim: KsefSimulator, client: KsefClient, tmp_path: Path
) -> None:
    now = sim.clock.now_dt()
    since = now - 120 * DAY
    numbers = simret.seed_invoices(sim, NIP, 400, since + dt.timedelta(hours=1), now - DAY, seed=5)
    out = tmp_path / "out"
    report = await sync_invoices(client.retrieval, out, since=since, backoff=FAST_POLL)

    sub = report.subjects[0]
    lines = (out / INDEX_FILE).read_text("utf-8").splitlines()
    assert len(lines) == len(numbers)  # every invoice indexed exactly once
    assert sorted(p.stem for p in out.glob("*.xml")) == sorted(numbers)
    assert sub.invoices_written == len(numbers)
    assert sub.duplicates_skipped == 0  # no invoice came in two packages
    exported = ranges(sim, "export")
    assert len(exported) == sub.exports == 2
    assert exported[0][0] == since
    for low, high in exported:
        assert dt.timedelta(0) < high - low <= MAX_WINDOW
    for (_, high), (next_low, _) in itertools.pairwise(exported):
        assert next_low == high  # no gap between windows


async def test_a_250_day_query_is_three_windows_each_record_once(sim: KsefSimulator, client: KsefClient) -> None:
    now = sim.clock.now_dt()
    start = now - 250 * DAY
    numbers = simret.seed_invoices(sim, NIP, 120, start + DAY, now - DAY, seed=6)
    got = [m.ksef_number async for m in iter_metadata(client.retrieval, filters(start, now))]
    assert sorted(got) == sorted(numbers)
    assert len(got) == len(set(got))
    windows = list(dict.fromkeys(ranges(sim, "query")))
    assert windows == [
        (start, start + MAX_WINDOW),
        (start + MAX_WINDOW, start + 2 * MAX_WINDOW),
        (start + 2 * MAX_WINDOW, now),
    ]


async def test_naive_datetimes_are_refused_before_any_request(
    sim: KsefSimulator, client: KsefClient, tmp_path: Path
) -> None:
    naive = dt.datetime(2026, 7, 1, 12, 0)  # noqa: DTZ001
    aware = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    before = Counter(sim.counters.operations)
    with pytest.raises(NaiveDateTimeError, match=r"dateRange\.from") as info:
        _ = [m async for m in iter_metadata(client.retrieval, filters(naive))]
    assert info.value.field == "dateRange.from"
    with pytest.raises(NaiveDateTimeError, match=r"dateRange\.to"):
        _ = [m async for m in iter_metadata(client.retrieval, filters(aware, naive))]
    with pytest.raises(NaiveDateTimeError, match=r"dateRange\.to"):
        await client.retrieval.query_metadata_page(filters(aware, naive))
    with pytest.raises(NaiveDateTimeError, match=r"dateRange\.from"):
        async with export_invoices(client.retrieval, filters(naive)):
            pass
    with pytest.raises(NaiveDateTimeError, match="since"):
        await sync_invoices(client.retrieval, tmp_path / "out", since=naive)
    assert sim.counters.operations == before
    assert sim.counters.date_ranges == []


async def test_a_refused_range_is_a_typed_error_naming_the_rule(sim: KsefSimulator, client: KsefClient) -> None:
    now = sim.clock.now_dt()
    too_long = filters(now - 101 * DAY, now)
    with pytest.raises(DateRangeRefusedError, match="100 days") as info:
        await client.retrieval.query_metadata_page(too_long)  # one page: no splitting at this level
    assert info.value.has_code(21405)
    assert "100 days counted in UTC" in str(info.value)
    with pytest.raises(DateRangeRefusedError, match="100 days"):
        await client.retrieval.start_export(too_long, SessionKey.generate())
    # The export helper cannot split one export: it refuses before sending.
    before = Counter(sim.counters.operations)
    with pytest.raises(ConfigurationError, match="exceeds 100 days"):
        async with export_invoices(client.retrieval, too_long):
            pass
    assert sim.counters.operations == before
    # Exactly 100 days is legal.
    page = await client.retrieval.query_metadata_page(filters(now - MAX_WINDOW, now))
    assert page.invoices == ()


@pytest.mark.parametrize(("asked", "reported"), [("TarGz", "Zip"), ("Zip", "TarGz")])
async def test_packages_are_unpacked_by_the_reported_compression_type(
    sim: KsefSimulator, client: KsefClient, tmp_path: Path, asked: str, reported: str
) -> None:
    now = sim.clock.now_dt()
    numbers = simret.seed_invoices(sim, NIP, 15, now - 5 * DAY, now - DAY, seed=7)
    key = SessionKey.generate()
    # The export is made in 'asked'; download_package is told 'reported' (wrong): the status decides.
    ref = await client.retrieval.start_export(
        filters(now - 10 * DAY, restrict_to_permanent_storage_hwm_date=True), key, compression=asked
    )
    status = await client.retrieval.wait_for_export(ref, backoff=FAST_POLL)
    assert status.package is not None
    assert str(status.package.compression_type) == asked
    package = await download_package(client.retrieval, ref, status, key, compression=reported, workdir=tmp_path)
    try:
        assert package.compression == asked
        got = [item async for item in package.invoices()]
        assert sorted(str(i.metadata.ksef_number) for i in got) == sorted(numbers)
        assert all(i.xml == sim.state.invoices[str(i.metadata.ksef_number)].content for i in got)
    finally:
        package.close()
    # An unknown compressionType is a protocol error naming the value, raised before any part is downloaded.
    odd = attrs.evolve(status, package=attrs.evolve(status.package, compression_type="SevenZip"))
    storage_before = sim.counters.requests["storage"]
    with pytest.raises(ResponseFormatError, match="compressionType: unknown value 'SevenZip'"):
        await download_package(client.retrieval, ref, odd, key, workdir=tmp_path)
    assert sim.counters.requests["storage"] == storage_before
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test assertion on a tiny directory
