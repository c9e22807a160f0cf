"""The metadata iterator: legal windows, paging, truncation restarts, each record exactly once, explicit offsets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ksef_async.client import KsefClient
from ksef_async.errors import ConfigurationError
from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters
from ksef_async.retrieval.query import MAX_WINDOW, iter_metadata
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret

from .conftest import NIP

DAY = dt.timedelta(days=1)


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
        assert high - low <= MAX_WINDOW


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
