"""`ksef_async.core.windows`: 100-day UTC windows for ``dateRange``, exact boundaries, aware UTC values only."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core.windows import MAX_WINDOW, check_window, require_aware, split_windows, window_end
from ksef_async.errors import ConfigurationError, NaiveDateTimeError

WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")
ZONES = st.sampled_from([dt.UTC, WARSAW, dt.timezone(dt.timedelta(hours=-5)), dt.timezone(dt.timedelta(hours=14))])


@given(
    # hypothesis wants naive bounds and adds the zone itself
    start=st.datetimes(
        min_value=dt.datetime(2024, 1, 1),  # noqa: DTZ001
        max_value=dt.datetime(2027, 1, 1),  # noqa: DTZ001
        timezones=ZONES,
        allow_imaginary=False,
    ),
    length=st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=1200)),
    end_zone=ZONES,
)
def test_windows_cover_the_range_exactly_each_at_most_100_days_in_utc(
    start: dt.datetime, length: dt.timedelta, end_zone: dt.tzinfo
) -> None:
    end = (start + length).astimezone(end_zone)
    windows = split_windows(start, end)
    span = end.astimezone(dt.UTC) - start.astimezone(dt.UTC)  # same-zone subtraction would be wall-clock time
    # compared as UTC instants: PEP 495 makes inter-zone == false for an ambiguous local time
    assert windows[0][0] == start.astimezone(dt.UTC)
    assert windows[-1][1] == end.astimezone(dt.UTC)
    for (_, high), (next_low, _) in itertools.pairwise(windows):
        assert high == next_low  # inclusive ranges share the boundary instant: no gap
    for low, high in windows:
        assert low.tzinfo is dt.UTC
        assert high.tzinfo is dt.UTC
        assert dt.timedelta(0) <= high - low <= MAX_WINDOW
    # no overlap beyond the shared instant: the windows' interiors are disjoint and ordered
    assert all(a[0] < a[1] <= b[0] for a, b in itertools.pairwise(windows))
    # union = input: total length is the requested length, and the count is the minimum possible
    assert sum((high - low for low, high in windows), dt.timedelta(0)) == span
    assert len(windows) == max(1, -(-span // MAX_WINDOW))


def test_exact_boundaries_250_days_in_three_windows_and_100_days_in_one() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert split_windows(start, start + 250 * dt.timedelta(days=1)) == [
        (start, start + dt.timedelta(days=100)),
        (start + dt.timedelta(days=100), start + dt.timedelta(days=200)),
        (start + dt.timedelta(days=200), start + dt.timedelta(days=250)),
    ]
    assert split_windows(start, start + MAX_WINDOW) == [(start, start + MAX_WINDOW)]
    assert len(split_windows(start, start + MAX_WINDOW + dt.timedelta(microseconds=1))) == 2


def test_days_are_counted_in_utc_across_a_dst_change() -> None:
    # 2026-03-29 Warsaw moves from +01:00 to +02:00: 100 Warsaw calendar days are 100 days minus an hour in UTC.
    start = dt.datetime(2026, 3, 1, 0, 0, tzinfo=WARSAW)
    end = dt.datetime(2026, 6, 9, 0, 0, tzinfo=WARSAW)
    (window,) = split_windows(start, end)
    assert window == (start.astimezone(dt.UTC), end.astimezone(dt.UTC))
    assert window[1] - window[0] == MAX_WINDOW - dt.timedelta(hours=1)
    assert len(split_windows(start, end + dt.timedelta(hours=2))) == 2


def test_naive_values_are_refused_naming_the_field() -> None:
    aware = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    naive = dt.datetime(2026, 7, 2)  # noqa: DTZ001
    with pytest.raises(NaiveDateTimeError, match=r"dateRange\.to") as info:
        split_windows(aware, naive)
    assert info.value.field == "dateRange.to"
    with pytest.raises(NaiveDateTimeError, match=r"dateRange\.from"):
        check_window(naive, None)
    with pytest.raises(NaiveDateTimeError, match="since"):
        require_aware(naive, "since")
    assert isinstance(info.value, ConfigurationError)
    assert require_aware(dt.datetime(2026, 7, 1, 2, tzinfo=WARSAW), "x") == dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


def test_reversed_too_long_and_bad_spans_are_configuration_errors() -> None:
    start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    with pytest.raises(ConfigurationError, match="before"):
        split_windows(start, start - dt.timedelta(seconds=1))
    with pytest.raises(ConfigurationError, match="span"):
        split_windows(start, start, span=dt.timedelta(days=101))
    with pytest.raises(ConfigurationError, match="100 days"):
        check_window(start, start + dt.timedelta(days=100, seconds=1))
    check_window(start, start + MAX_WINDOW)
    check_window(start, None)
    assert window_end(start.astimezone(WARSAW)) == start + MAX_WINDOW
    assert split_windows(start, start) == [(start, start)]


def test_cli_dates_without_offset_are_warsaw_time_with_an_explicit_offset() -> None:
    from ksef_async.cli.query import parse_moment  # noqa: PLC0415 - the CLI layer, only for this test

    winter, summer = parse_moment("2026-01-15", "--from"), parse_moment("2026-07-01T12:00", "--to")
    assert winter.utcoffset() == dt.timedelta(hours=1)
    assert summer.utcoffset() == dt.timedelta(hours=2)
    assert isinstance(summer.tzinfo, dt.timezone)  # a fixed offset, sent as +02:00
    assert summer.astimezone(dt.UTC) == dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC)
    assert summer.isoformat().endswith("+02:00")
    assert parse_moment("2026-07-01T12:00Z", "--to") == dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    with pytest.raises(ConfigurationError, match="--from"):
        parse_moment("yesterday", "--from")
