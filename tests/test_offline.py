"""Offline-mode send deadlines and the Polish business-day calendar behind them."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core.offline import (
    EMERGENCY_BUSINESS_DAYS,
    Failure,
    OfflineMode,
    add_business_days,
    easter_sunday,
    emergency_deadline,
    is_business_day,
    next_business_day,
    offline24_deadline,
    offline_deadline,
    polish_holidays,
    send_deadline,
)
from ksef_async.errors import ConfigurationError

D = dt.date


@pytest.mark.parametrize(
    ("year", "easter"),
    [
        (2000, D(2000, 4, 23)),
        (2019, D(2019, 4, 21)),
        (2024, D(2024, 3, 31)),
        (2025, D(2025, 4, 20)),
        (2026, D(2026, 4, 5)),
        (2027, D(2027, 3, 28)),
        (2038, D(2038, 4, 25)),  # latest possible date
        (2285, D(2285, 3, 22)),  # earliest possible date
    ],
)
def test_easter_sunday(year: int, easter: dt.date) -> None:
    assert easter_sunday(year) == easter


def test_holidays_2026_in_full() -> None:
    assert sorted(polish_holidays(2026)) == [
        D(2026, 1, 1),
        D(2026, 1, 6),
        D(2026, 4, 5),  # Easter Sunday
        D(2026, 4, 6),  # Easter Monday
        D(2026, 5, 1),
        D(2026, 5, 3),
        D(2026, 5, 24),  # Pentecost Sunday
        D(2026, 6, 4),  # Corpus Christi
        D(2026, 8, 15),
        D(2026, 11, 1),
        D(2026, 11, 11),
        D(2026, 12, 24),
        D(2026, 12, 25),
        D(2026, 12, 26),
    ]


@pytest.mark.parametrize(
    ("year", "easter_monday", "pentecost", "corpus_christi"),
    [
        (2024, D(2024, 4, 1), D(2024, 5, 19), D(2024, 5, 30)),
        (2025, D(2025, 4, 21), D(2025, 6, 8), D(2025, 6, 19)),
        (2027, D(2027, 3, 29), D(2027, 5, 16), D(2027, 5, 27)),
    ],
)
def test_movable_holidays(year: int, easter_monday: dt.date, pentecost: dt.date, corpus_christi: dt.date) -> None:
    days = polish_holidays(year)
    assert {easter_monday, pentecost, corpus_christi} <= days
    assert not is_business_day(easter_monday)
    assert not is_business_day(corpus_christi)


def test_christmas_eve_is_a_holiday_from_2025_only() -> None:
    assert D(2024, 12, 24) not in polish_holidays(2024)
    assert is_business_day(D(2024, 12, 24))  # a Tuesday
    assert D(2025, 12, 24) in polish_holidays(2025)
    assert not is_business_day(D(2025, 12, 24))  # a Wednesday
    assert len(polish_holidays(2024)) == 13
    assert len(polish_holidays(2025)) == 14


def test_weekends_are_not_business_days() -> None:
    assert not is_business_day(D(2026, 3, 14))  # Saturday
    assert not is_business_day(D(2026, 3, 15))  # Sunday
    assert is_business_day(D(2026, 3, 16))


@pytest.mark.parametrize(
    ("issued", "deadline"),
    [
        (
            D(2025, 7, 8),
            D(2025, 7, 9),
        ),  # docs example (Tue -> Wed; the docs say Wednesday, Thursday)
        (D(2026, 3, 13), D(2026, 3, 16)),  # Friday -> Monday
        (D(2026, 3, 14), D(2026, 3, 16)),  # issued on a Saturday
        (D(2026, 4, 3), D(2026, 4, 7)),  # Friday before Easter -> Tuesday after Easter Monday
        (D(2025, 12, 23), D(2025, 12, 29)),  # 24-26 Dec holidays, then the weekend
        (D(2024, 12, 23), D(2024, 12, 24)),  # 24 Dec was a business day in 2024
        (D(2026, 12, 31), D(2027, 1, 4)),  # New Year, then the weekend
        (D(2027, 5, 26), D(2027, 5, 28)),  # Corpus Christi on Thursday 27 May
    ],
)
def test_offline24_deadline(issued: dt.date, deadline: dt.date) -> None:
    assert offline24_deadline(issued) == deadline
    assert send_deadline(OfflineMode.OFFLINE24, issued) == deadline
    assert send_deadline("offline24", issued) == deadline


def test_offline_deadline_is_next_business_day_after_unavailability() -> None:
    assert offline_deadline(D(2026, 4, 30)) == D(2026, 5, 4)  # 1 May holiday, weekend (3 May is a Sunday)
    assert send_deadline("offline", D(2026, 4, 30)) == D(2026, 5, 4)


def test_emergency_deadline_counts_seven_business_days() -> None:
    assert EMERGENCY_BUSINESS_DAYS == 7
    assert emergency_deadline(D(2025, 7, 12)) == D(2025, 7, 22)  # ends on a Saturday
    # 23 Dec (1), 29-31 Dec (2-4), 2 Jan (5), 5 Jan (6), 7 Jan (7): 24-26 Dec, 1 Jan and 6 Jan are holidays.
    assert emergency_deadline(D(2025, 12, 22)) == D(2026, 1, 7)
    assert send_deadline("emergency", D(2025, 12, 22)) == D(2026, 1, 7)


def test_docs_example_offline24_moved_by_a_failure() -> None:
    failure = Failure(announced=D(2025, 7, 9), end=D(2025, 7, 12))
    assert send_deadline("offline24", D(2025, 7, 8), [failure]) == D(2025, 7, 22)


def test_failure_notices_outside_the_waiting_period_change_nothing() -> None:
    before = Failure(announced=D(2025, 7, 1), end=D(2025, 7, 3))
    after = Failure(announced=D(2025, 7, 10), end=D(2025, 7, 11))  # deadline 9 July already passed
    assert send_deadline("offline24", D(2025, 7, 8), [before, after]) == D(2025, 7, 9)


def test_new_failure_in_emergency_window_restarts_the_count() -> None:
    first_end = D(2026, 3, 2)  # Monday; deadline 11 March
    assert send_deadline("emergency", first_end) == D(2026, 3, 11)
    second = Failure(announced=D(2026, 3, 10), end=D(2026, 3, 13))
    assert send_deadline("emergency", first_end, [second]) == D(2026, 3, 24)
    # Chained: a third notice inside the second window restarts it again; order of the list does not matter.
    third = Failure(announced=D(2026, 3, 20), end=D(2026, 3, 20))
    assert send_deadline("emergency", first_end, [third, second]) == D(2026, 3, 31)


def test_last_announced_failure_wins_even_if_it_ends_earlier() -> None:
    # The docs count from the end of the *last announced* failure, not the latest end.
    long = Failure(announced=D(2026, 3, 3), end=D(2026, 3, 20))
    short = Failure(announced=D(2026, 3, 5), end=D(2026, 3, 5))
    assert send_deadline("offline24", D(2026, 3, 2), [long, short]) == emergency_deadline(D(2026, 3, 5))


def test_total_failure_removes_the_obligation() -> None:
    total = Failure(announced=D(2025, 7, 9), end=D(2025, 7, 20), total=True)
    assert send_deadline("offline24", D(2025, 7, 8), [total]) is None
    late_total = Failure(announced=D(2025, 7, 15), end=D(2025, 7, 20), total=True)
    assert send_deadline("offline24", D(2025, 7, 8), [late_total]) == D(2025, 7, 9)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="offline mode"):
        send_deadline("offline48", D(2026, 1, 1))
    with pytest.raises(ConfigurationError, match="before its announcement"):
        Failure(announced=D(2026, 1, 2), end=D(2026, 1, 1))
    with pytest.raises(ConfigurationError, match="at least 1"):
        add_business_days(D(2026, 1, 1), 0)


@given(st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 12, 31)), st.integers(min_value=1, max_value=30))
def test_add_business_days_counts_exactly_n_business_days(day: dt.date, count: int) -> None:
    result = add_business_days(day, count)
    assert is_business_day(result)
    between = [day + dt.timedelta(days=i) for i in range(1, (result - day).days + 1)]
    assert sum(is_business_day(d) for d in between) == count
    assert next_business_day(day) == add_business_days(day, 1)
