"""Metadata query as an async iterator: legal 100-day UTC windows, paging, truncation restarts, each record once."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.codes import ExceptionCode
from ksef_async.core.paging import PageGuard
from ksef_async.core.windows import MAX_WINDOW, require_aware, split_windows
from ksef_async.errors import BadRequestError, ConfigurationError
from ksef_async.models import (
    InvoiceMetadata,
    InvoiceQueryDateType,
    InvoiceQueryFilters,
    SortOrder,
)
from ksef_async.resources.retrieval import WARSAW, RetrievalResource, aware

__all__ = [
    "FROM_AFTER_HWM",
    "MAX_PAGE_SIZE",
    "MAX_WINDOW",
    "MIN_PAGE_SIZE",
    "iter_metadata",
    "metadata_date",
    "split_windows",
]

logger = get_logger("retrieval")

MIN_PAGE_SIZE = 10
MAX_PAGE_SIZE = 250
FROM_AFTER_HWM = ExceptionCode.FROM_AFTER_HWM
"""KSeF exception code: ``dateRange.from`` is after the HWM while ``restrictToPermanentStorageHwmDate`` is set."""


def metadata_date(record: InvoiceMetadata, date_type: InvoiceQueryDateType | str) -> dt.datetime:
    """The date of ``record`` that a query by ``date_type`` sorts and filters on, as an aware datetime."""
    kind = str(date_type)
    if kind == InvoiceQueryDateType.PERMANENT_STORAGE:
        return aware(record.permanent_storage_date)
    if kind == InvoiceQueryDateType.INVOICING:
        return aware(record.invoicing_date)
    day = record.issue_date
    return dt.datetime(day.year, day.month, day.day, tzinfo=WARSAW)


async def iter_metadata(  # noqa: C901, PLR0912
    retrieval: RetrievalResource,
    filters: InvoiceQueryFilters,
    *,
    sort_order: SortOrder | str = SortOrder.ASC,
    page_size: int = MAX_PAGE_SIZE,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> AsyncIterator[InvoiceMetadata]:
    """Yield every `InvoiceMetadata` matching ``filters``, each exactly once.

    * A range longer than 100 days (counted in UTC) is cut into legal windows (`split_windows`: consecutive,
      inclusive, sharing their boundary instants); a missing ``to`` becomes now.
    * Pages are requested with explicit ``pageOffset``; ``hasMore`` false ends a window.
    * On ``isTruncated`` (10,000 records per filter set) the range is narrowed to the last record's date
      (``from`` when ascending, ``to`` when descending) and paging restarts at offset 0. The records at that
      boundary date come again; the ones already yielded are skipped.
    * With ``restrictToPermanentStorageHwmDate``, a window starting after the HWM (21183) ends the iteration.

    Args:
        retrieval: ``client.retrieval``.
        filters: The query; its date-times must carry a UTC offset (sent as UTC with ``Z``-equivalent ``+00:00``).
        sort_order: ``Asc`` (use it for incremental work) or ``Desc``.
        page_size: 10 to 250.
        now: Current time, for a missing ``to``.

    Raises:
        NaiveDateTimeError: ``dateRange.from`` or ``dateRange.to`` has no UTC offset (nothing is sent).
        ConfigurationError: ``page_size`` out of range, ``to`` before ``from``, or more than 10,000 records
            share one date (narrowing cannot make progress: add filters).
        DateRangeRefusedError: KSeF refused a window anyway (21405 naming ``dateRange``).
    """
    if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
        raise ConfigurationError(f"page_size: {page_size} is outside {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}")
    require_aware(filters.date_range.from_, "dateRange.from")
    if filters.date_range.to is not None:
        require_aware(filters.date_range.to, "dateRange.to")
    descending = str(sort_order) == SortOrder.DESC
    date_range = filters.date_range
    date_type = date_range.date_type
    windows = split_windows(date_range.from_, date_range.to if date_range.to is not None else now(), span=MAX_WINDOW)
    if descending:
        windows.reverse()
    boundary_date: dt.datetime | None = None
    boundary: set[str] = set()
    for window_low, window_high in windows:
        low, high = window_low, window_high
        offset = 0
        guard = PageGuard("query_metadata")
        while True:
            query = attrs.evolve(filters, date_range=attrs.evolve(date_range, from_=low, to=high))
            try:
                page = await retrieval.query_metadata_page(
                    query, sort_order=sort_order, page_offset=offset, page_size=page_size
                )
            except BadRequestError as exc:
                if exc.has_code(FROM_AFTER_HWM):
                    logger.info("query window starts after the HWM: done", extra=extras(window_from=low.isoformat()))
                    return
                raise
            # hasMore with an empty page, or paging past any real listing, would loop for ever.
            guard.page(items=len(page.invoices), has_more=bool(page.has_more))
            for record in page.invoices:
                number = str(record.ksef_number)
                if number in boundary:
                    continue
                moment = metadata_date(record, date_type)
                if moment != boundary_date:
                    boundary_date, boundary = moment, set()
                boundary.add(number)
                yield record
            if not page.has_more:
                break
            if page.is_truncated and page.invoices:
                last = metadata_date(page.invoices[-1], date_type)
                if (descending and last >= high) or (not descending and last <= low):
                    raise ConfigurationError(
                        f"more than 10,000 invoices share the {date_type} date {last.isoformat()}: narrow the filters"
                    )
                logger.info("query truncated: narrowing the range", extra=extras(last=last.isoformat()))
                if descending:
                    high = last
                else:
                    low = last
                offset = 0
            else:
                offset += 1
