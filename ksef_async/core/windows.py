"""Date windows for KSeF's ``dateRange`` (metadata query and export): at most 100 days, counted in UTC."""

from __future__ import annotations

import datetime as dt

from ksef_async.errors import ConfigurationError, NaiveDateTimeError

__all__ = [
    "MAX_WINDOW",
    "check_window",
    "require_aware",
    "split_windows",
    "window_end",
]

MAX_WINDOW = dt.timedelta(days=100)
"""``InvoiceQueryFilters.dateRange``: "Maksymalny dozwolony okres wynosi 100 dni w strefie UTC" (API 2.9.0)."""


def require_aware(moment: dt.datetime, field: str) -> dt.datetime:
    """Return ``moment`` in UTC; refuse a naive value instead of guessing its zone.

    Args:
        moment: A date-time given by the caller.
        field: The field it is for, named in the error (e.g. ``"dateRange.from"``).

    Raises:
        NaiveDateTimeError: ``moment`` has no UTC offset (2.9.0 accepts only ``Z`` or an explicit offset).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDateTimeError(field)
    return moment.astimezone(dt.UTC)


def check_window(start: dt.datetime, end: dt.datetime | None) -> None:
    """Check that ``[start, end]`` is one legal ``dateRange`` (``end`` None: up to now, judged by KSeF).

    Raises:
        NaiveDateTimeError: ``start`` or ``end`` has no UTC offset.
        ConfigurationError: ``end`` is before ``start``, or more than 100 days after it (in UTC).
    """
    low = require_aware(start, "dateRange.from")
    if end is None:
        return
    high = require_aware(end, "dateRange.to")
    if high < low:
        raise ConfigurationError(f"dateRange: 'to' ({high.isoformat()}) is before 'from' ({low.isoformat()})")
    if high - low > MAX_WINDOW:
        raise ConfigurationError(
            f"dateRange: {high - low} from {low.isoformat()} to {high.isoformat()} exceeds {MAX_WINDOW.days} days "
            "counted in UTC: split it into windows"
        )


def window_end(start: dt.datetime, *, span: dt.timedelta = MAX_WINDOW) -> dt.datetime:
    """The latest legal ``to`` for a range starting at ``start``: ``start`` + ``span`` in UTC (aware, UTC)."""
    return require_aware(start, "dateRange.from") + span


def split_windows(
    start: dt.datetime, end: dt.datetime, *, span: dt.timedelta = MAX_WINDOW
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Cut ``[start, end]`` into consecutive windows ``[from, to]`` with ``to - from <= span`` (UTC instants).

    KSeF's ``dateRange`` is inclusive at both ends (``from <= date <= to``), so a window of exactly 100 days
    (``to - from == 100 days``) is legal, and consecutive windows share their boundary instant: window ``i``'s
    ``to`` is window ``i+1``'s ``from``. Nothing falls between two windows (no gap); the only overlap is that
    single instant, which callers absorb by skipping KSeF numbers already seen. The first ``from`` is ``start``
    and the last ``to`` is ``end`` exactly; ``start == end`` gives one zero-length window. Every value returned
    is a timezone-aware UTC datetime.

    Args:
        start: ``dateRange.from`` (aware).
        end: ``dateRange.to`` (aware).
        span: The longest window (default and maximum: 100 days).

    Raises:
        NaiveDateTimeError: ``start`` or ``end`` has no UTC offset.
        ConfigurationError: ``end`` is before ``start``, or ``span`` is not positive or exceeds 100 days.
    """
    low = require_aware(start, "dateRange.from")
    high = require_aware(end, "dateRange.to")
    if not dt.timedelta(0) < span <= MAX_WINDOW:
        raise ConfigurationError(f"span: {span} is not within (0, {MAX_WINDOW.days} days]")
    if high < low:
        raise ConfigurationError(f"dateRange: 'to' ({high.isoformat()}) is before 'from' ({low.isoformat()})")
    windows: list[tuple[dt.datetime, dt.datetime]] = []
    while high - low > span:
        windows.append((low, low + span))
        low += span
    windows.append((low, high))
    return windows
