"""The metadata iterator: legal windows, paging, truncation restarts, each record exactly once, explicit offsets."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.client import KsefClient
from ksef_async.errors import ConfigurationError
from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters
from ksef_async.retrieval.query import add_months, iter_metadata, split_windows
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret

from .conftest import NIP

DAY = dt.timedelta(days=1)


@given(
    # hypothesis wants naive bounds and adds the zone itself
    start=st.datetimes(
        min_value=dt.datetime(2024, 1, 1),  # noqa: DTZ001
        max_value=dt.datetime(2027, 1, 1),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    ),
    length=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=800)),
)
def test_split_windows_cover_the_range_contiguously_within_three_months(
    start: dt.datetime, length: dt.timedelta
) -> None:
    end = start + length
    windows = split_windows(start, end)
    assert windows[0][0] == start
    assert windows[-1][1] == end
    for (_, high), (next_low, _) in itertools.pairwise(windows):
        assert high == next_low  # shared boundary: nothing between windows is lost
    for low, high in windows:
        assert low <= high <= add_months(low, 3)


def test_split_windows_reads_naive_dates_as_warsaw_and_rejects_reversed_ranges() -> None:
    (window,) = split_windows(dt.datetime(2026, 7, 1, 12, 0), dt.datetime(2026, 7, 2, 12, 0))  # noqa: DTZ001
    assert window[0] == dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC)
    with pytest.raises(ConfigurationError, match="before"):
        split_windows(dt.datetime(2026, 7, 2, tzinfo=dt.UTC), dt.datetime(2026, 7, 1, tzinfo=dt.UTC))


def filters(start: dt.datetime, end: dt.datetime | None = None, **extra: Any) -> InvoiceQueryFilters:
    return InvoiceQueryFilters(
        subject_type="Subject2",
        date_range=InvoiceQueryDateRange(date_type="PermanentStorage", from_=start, to=end, **extra),
    )


@pytest.mark.anyio
async def test_more_than_10000_records_are_yielded_once_across_truncation_restarts(
    sim: KsefSimulator, client: KsefClient
) -> None:
    now = sim.clock.now_dt()
    start, end = now - 60 * DAY, now - DAY
    # Two batches over the same instants: every permanent-storage date is shared by two invoices, so a truncation
    # boundary falls between records of one date and the restart must skip exactly the ones already yielded.
    first = simret.seed_invoices(sim, NIP, 5_300, start, end, seed=1)
    second = simret.seed_invoices(sim, NIP, 5_300, start, end, seed=2)
    pages: list[tuple[str, str]] = []
    original = client.retrieval.query_metadata_page

    async def spy(query: InvoiceQueryFilters, **kwargs: Any) -> Any:
        pages.append((query.date_range.from_.isoformat(), str(kwargs["page_offset"])))
        return await original(query, **kwargs)

    client.retrieval.query_metadata_page = spy  # type: ignore[method-assign,assignment]
    got = [m.ksef_number async for m in iter_metadata(client.retrieval, filters(now - 70 * DAY))]
    assert len(got) == len(set(got)) == 10_600
    assert set(got) == set(first) | set(second)
    dates = [sim.state.invoices[n].permanent_storage_date for n in got]
    assert dates == sorted(dates)
    restarts = [p for p in pages if p[1] == "0"]
    assert len(restarts) == 2  # the first query and one narrowed restart after 10,000 records
    assert restarts[1][0] != restarts[0][0]


@pytest.mark.anyio
async def test_descending_order_long_range_and_small_cap(sim: KsefSimulator, client: KsefClient) -> None:
    simret.settings(sim).query_cap = 40
    now = sim.clock.now_dt()
    numbers = simret.seed_invoices(sim, NIP, 150, now - 200 * DAY, now - DAY)  # spans three 3-month windows
    sent: list[InvoiceQueryFilters] = []
    original = client.retrieval.query_metadata_page

    async def spy(query: InvoiceQueryFilters, **kwargs: Any) -> Any:
        sent.append(query)
        return await original(query, **kwargs)

    client.retrieval.query_metadata_page = spy  # type: ignore[method-assign,assignment]
    got = [
        m.ksef_number
        async for m in iter_metadata(client.retrieval, filters(now - 210 * DAY, now), sort_order="Desc", page_size=10)
    ]
    assert got == numbers[::-1]
    for query in sent:
        low, high = query.date_range.from_, query.date_range.to
        assert low.tzinfo is not None
        assert high is not None
        assert high.tzinfo is not None
        assert high <= add_months(low, 3)


@pytest.mark.anyio
async def test_filters_pass_through_and_a_window_after_the_hwm_ends_quietly(
    sim: KsefSimulator, client: KsefClient
) -> None:
    now = sim.clock.now_dt()
    numbers = simret.seed_invoices(sim, NIP, 30, now - 10 * DAY, now - DAY)
    wanted = sim.state.invoices[numbers[7]]
    query = InvoiceQueryFilters(
        subject_type="Subject2",
        date_range=InvoiceQueryDateRange(date_type="PermanentStorage", from_=now - 20 * DAY),
        invoice_number=wanted.invoice_number,
    )
    assert [m.ksef_number async for m in iter_metadata(client.retrieval, query)] == [numbers[7]]
    late = filters(now + DAY, restrict_to_permanent_storage_hwm_date=True)
    assert [m async for m in iter_metadata(client.retrieval, late, now=lambda: now + 2 * DAY)] == []
    with pytest.raises(ConfigurationError, match="page_size"):
        _ = [m async for m in iter_metadata(client.retrieval, filters(now - DAY), page_size=251)]
