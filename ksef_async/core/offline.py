"""Deadlines for sending offline invoices to KSeF (offline24, offline, emergency) over Polish business days.

Rules (docs ``tryby-offline.md``; VAT act art. 106nda, 106nh, 106nf):

* ``offline24``: by the next business day after the issue date (``P_1``).
* ``offline`` (announced unavailability): by the next business day after the unavailability ends.
* ``emergency`` (announced failure, *tryb awaryjny*): within 7 business days after the failure ends; a new failure
  notice during those 7 days restarts the count from the end of that failure.
* A failure announced while an offline24/offline invoice is waiting to be sent moves its deadline to 7 business
  days after the end of the last announced failure.
* A *total* failure (announced in the mass media) removes the obligation to send at all.

The docs' worked example: offline24 invoice issued Wed 2025-07-08 (deadline 2025-07-09); a failure announced on
2025-07-09 ends Sat 2025-07-12; the deadline becomes Tue 2025-07-22.

Business days exclude Saturdays, Sundays and the public holidays of the Act of 18 January 1951 on days free from
work, including 24 December from 2025 on (added by the amendment in force since 1 February 2025).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Sequence

import attrs

from ksef_async.errors import ConfigurationError

__all__ = [
    "EMERGENCY_BUSINESS_DAYS",
    "Failure",
    "OfflineMode",
    "add_business_days",
    "easter_sunday",
    "emergency_deadline",
    "is_business_day",
    "next_business_day",
    "offline24_deadline",
    "offline_deadline",
    "polish_holidays",
    "send_deadline",
]

EMERGENCY_BUSINESS_DAYS = 7
"""Business days allowed after a failure ends (art. 106nf)."""

_SATURDAY = 5
_CHRISTMAS_EVE_FROM = 2025
_EPIPHANY_FROM = 2011


class OfflineMode(enum.StrEnum):
    """The offline issuing modes that carry a sending deadline."""

    OFFLINE24 = "offline24"
    OFFLINE = "offline"
    EMERGENCY = "emergency"


def easter_sunday(year: int) -> dt.date:
    """Gregorian Easter Sunday of ``year`` (the anonymous Gregorian / Meeus-Jones-Butcher algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


@functools.cache
def polish_holidays(year: int) -> frozenset[dt.date]:
    """Polish statutory public holidays of ``year``, movable ones included.

    Fixed: 1 Jan, 6 Jan (from 2011), 1 May, 3 May, 15 Aug, 1 Nov, 11 Nov, 24 Dec (from 2025), 25 Dec, 26 Dec.
    Movable: Easter Sunday and Monday, Pentecost Sunday (Easter + 49), Corpus Christi (Easter + 60).
    """
    easter = easter_sunday(year)
    fixed = [(1, 1), (5, 1), (5, 3), (8, 15), (11, 1), (11, 11), (12, 25), (12, 26)]
    if year >= _EPIPHANY_FROM:
        fixed.append((1, 6))
    if year >= _CHRISTMAS_EVE_FROM:
        fixed.append((12, 24))
    movable = [easter + dt.timedelta(days=n) for n in (0, 1, 49, 60)]
    return frozenset([dt.date(year, month, day) for month, day in fixed] + movable)


def is_business_day(day: dt.date) -> bool:
    """Whether ``day`` is a business day: not a Saturday, Sunday or Polish public holiday."""
    return day.weekday() < _SATURDAY and day not in polish_holidays(day.year)


def add_business_days(day: dt.date, count: int) -> dt.date:
    """The ``count``-th business day after ``day`` (``day`` itself is never counted; ``count`` >= 1)."""
    if count < 1:
        msg = f"business days: count must be at least 1, got {count}"
        raise ConfigurationError(msg)
    current = day
    while count:
        current += dt.timedelta(days=1)
        if is_business_day(current):
            count -= 1
    return current


def next_business_day(day: dt.date) -> dt.date:
    """The first business day strictly after ``day``."""
    return add_business_days(day, 1)


def offline24_deadline(issue_date: dt.date) -> dt.date:
    """Last day to send an ``offline24`` invoice: the next business day after its issue date (``P_1``)."""
    return next_business_day(issue_date)


def offline_deadline(unavailability_end: dt.date) -> dt.date:
    """Last day to send an ``offline`` invoice: the next business day after the announced unavailability ends."""
    return next_business_day(unavailability_end)


def emergency_deadline(failure_end: dt.date) -> dt.date:
    """Last day to send an emergency-mode invoice: the 7th business day after the failure ends."""
    return add_business_days(failure_end, EMERGENCY_BUSINESS_DAYS)


@attrs.frozen
class Failure:
    """A KSeF failure notice (BIP MF / interface software), as dates.

    Attributes:
        announced: The day the failure was announced.
        end: The day the failure ended.
        total: A total failure (mass media): invoices need not be sent at all.
    """

    announced: dt.date
    end: dt.date
    total: bool = False

    def __attrs_post_init__(self) -> None:
        if self.end < self.announced:
            msg = f"failure: end {self.end} is before its announcement {self.announced}"
            raise ConfigurationError(msg)


def send_deadline(mode: OfflineMode | str, start: dt.date, failures: Sequence[Failure] = ()) -> dt.date | None:
    """Last day to send an offline invoice, with later failure notices taken into account.

    Args:
        mode: ``offline24``, ``offline`` or ``emergency``.
        start: offline24: the issue date (``P_1``); offline: the day the unavailability ended; emergency: the day
            the failure ended.
        failures: Failure notices announced after ``start``, in any order. A notice counts when it is announced
            on or before the deadline in force at that moment; each such notice sets the deadline to 7 business
            days after its end (the count restarts), and a total failure removes the obligation.

    Returns:
        The last day to send, or ``None`` when a total failure was announced in time (nothing has to be sent).

    Raises:
        ConfigurationError: Unknown mode.
    """
    try:
        kind = OfflineMode(mode)
    except ValueError:
        msg = f"offline mode: {mode!r} is not one of {', '.join(m.value for m in OfflineMode)}"
        raise ConfigurationError(msg) from None
    if kind is OfflineMode.OFFLINE24:
        deadline = offline24_deadline(start)
    elif kind is OfflineMode.OFFLINE:
        deadline = offline_deadline(start)
    else:
        deadline = emergency_deadline(start)
    for failure in sorted(failures, key=lambda f: (f.announced, f.end)):
        if failure.announced < start or failure.announced > deadline:
            continue  # before the waiting period, or after it closed: no effect on this invoice
        if failure.total:
            return None
        deadline = emergency_deadline(failure.end)
    return deadline
