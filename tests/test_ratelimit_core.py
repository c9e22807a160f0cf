"""Properties of the sliding-window arithmetic, checked against brute-force counters on explicit timestamps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ksef_async.core.ratelimit as core
from ksef_async.core.ratelimit import DEFAULT_MIN_MARGIN, DEFAULT_SAFETY_MARGIN, SlidingWindowState, WindowLimits
from ksef_async.errors import ConfigurationError

# ---------------------------------------------------------------------------------------------------------------
# Independent oracles: they keep the whole history and count, where the code under test keeps max(N) entries and
# looks up one of them per window.


# A margin is (fraction, floor in seconds); the floor applies to every window, and binds on the short ones.
Margin = tuple[float, float]


def effective(limits: WindowLimits, margin: Margin) -> list[tuple[float, int]]:
    fraction, floor = margin
    return [(length + max(length * fraction, floor), limit) for length, limit in limits.windows()]


def oracle_earliest(
    history: list[float], limits: WindowLimits, margin: Margin, paused_until: float, now: float
) -> float:
    """The earliest time >= now (and >= pause, >= last admission) at which every window has room, by counting."""
    base = max([now, paused_until, *history[-1:]])
    windows = effective(limits, margin)
    # The answer is the base or the moment some recorded admission leaves some window.
    candidates = sorted({base} | {a + t for a in history for t, _ in windows if a + t > base})
    for c in candidates:
        if all(sum(1 for a in history if a + t > c) < n for t, n in windows):
            return c
    raise AssertionError("no candidate admits")  # pragma: no cover - the last candidate always has room


def max_in_any_interval(admissions: list[float], length: float) -> int:
    """The most admissions in any half-open [s, s + length); the worst interval starts at an admission."""
    return max((sum(1 for a in admissions if s <= a < s + length) for s in admissions), default=0)


def room_at(history: list[float], limits: WindowLimits, margin: Margin, x: float) -> bool:
    """Whether one more admission at x keeps every (lengthened) window within its limit."""
    return all(sum(1 for a in history if a <= x < a + t) < n for t, n in effective(limits, margin))


# ---------------------------------------------------------------------------------------------------------------
# Strategies

optional_limit = st.one_of(st.none(), st.integers(1, 6))
limits_st = st.builds(WindowLimits, optional_limit, optional_limit, optional_limit)
margins = st.tuples(st.sampled_from([0.0, 0.05, 0.3]), st.sampled_from([0.0, 0.25, 2.0]))
# Gaps at the three scales, so that every window fills and drains within one example.
gaps = st.one_of(st.floats(0, 0.5), st.floats(0, 30), st.floats(0, 1500), st.just(0.0))
events = st.lists(
    st.one_of(
        st.tuples(st.just("request"), gaps),
        st.tuples(st.just("pause"), st.floats(0, 90)),
    ),
    max_size=60,
)


@given(limits=limits_st, margin=margins, script=events)
def test_admissions_never_overfill_a_window_and_never_wait_needlessly(
    limits: WindowLimits, margin: Margin, script: list[tuple[str, float]]
) -> None:
    state = SlidingWindowState(limits, margin=margin[0], min_margin=margin[1])
    admitted: list[float] = []
    paused_until = -math.inf
    now = 0.0
    for kind, value in script:
        now += value if kind == "request" else 0.0
        if kind == "pause":
            paused_until = max(paused_until, now + value)
            state.pause_until(now + value)
            continue
        when = state.next_admission_time(now)
        assert when >= now
        assert when == oracle_earliest(admitted, limits, margin, paused_until, now)
        free_now = now >= paused_until and now >= max(admitted, default=-math.inf)
        if free_now and room_at(admitted, limits, margin, now):
            assert when == now  # no window is full: no wait
        state.admit(when)
        admitted.append(when)
    for length, limit in limits.windows():
        assert max_in_any_interval(admitted, length) <= limit  # KSeF's own window, without our margin


monotone_limits = st.tuples(st.integers(1, 4), st.integers(0, 4), st.integers(0, 8)).map(
    lambda t: WindowLimits(t[0], t[0] + t[1], t[0] + t[1] + t[2])
)


@given(
    first=monotone_limits,
    margin=margins,
    script=st.lists(st.one_of(st.tuples(st.just("request"), gaps), st.tuples(st.just("limits"), monotone_limits))),
)
def test_replaced_limits_count_the_history(
    first: WindowLimits, margin: Margin, script: list[tuple[str, float | WindowLimits]]
) -> None:
    state = SlidingWindowState(first, margin=margin[0], min_margin=margin[1])
    limits = first
    admitted: list[float] = []
    now = 0.0
    for _kind, value in script:
        if isinstance(value, WindowLimits):
            limits = value
            state.replace_limits(value)
            assert state.limits == value
            continue
        now += value
        when = state.next_admission_time(now)
        assert when == oracle_earliest(admitted, limits, margin, -math.inf, now)
        # The trailing windows at the moment of admission, under the limits then in force, counting all history.
        for length, limit in limits.windows():
            assert sum(1 for a in admitted if when < a + length) < limit
        state.admit(when)
        admitted.append(when)


def test_a_token_bucket_burst_is_refused() -> None:
    # A bucket of 5 refilled at 5/s admits 5 at t=0 and 5 more at t=1-: 10 in one second. We must not.
    state = SlidingWindowState(WindowLimits(5), margin=0.0)
    for _ in range(5):
        state.admit(0.0)
    assert state.next_admission_time(0.999) == 1.0
    state.admit(1.0)
    assert state.next_admission_time(1.0) == 1.0  # 4 of the first burst left the window at 1.0 too


def test_default_margin_is_proportional_with_a_floor_on_the_short_window() -> None:
    state = SlidingWindowState(WindowLimits(1, 2, 3))
    assert (state.margin, state.min_margin) == (DEFAULT_SAFETY_MARGIN, DEFAULT_MIN_MARGIN) == (0.05, 0.25)
    state.admit(0.0)
    # 5 % of 1 s is only 50 ms, below arrival-time jitter under load: the 0.25 s floor applies.
    assert state.next_admission_time(0.0) == pytest.approx(1.25)
    state.admit(1.25)
    assert state.next_admission_time(1.25) == pytest.approx(63.0)  # 60 s * 1.05 after the first
    state.admit(63.0)
    assert state.next_admission_time(63.0) == pytest.approx(3780.0)  # 3600 s * 1.05 after the first


@pytest.mark.parametrize(
    ("margin", "min_margin", "second"),
    [(0.0, None, 1.0), (0.05, 0.0, 1.05), (0.05, None, 1.25), (0.0, 0.5, 1.5), (0.3, 0.25, 1.3)],
)
def test_margin_and_floor_combine_as_the_larger(margin: float, min_margin: float | None, second: float) -> None:
    # margin 0 means exact windows (a simulator's): the default floor is off unless asked for.
    state = SlidingWindowState(WindowLimits(1), margin=margin, min_margin=min_margin)
    state.admit(0.0)
    assert state.next_admission_time(0.0) == pytest.approx(second)


def test_limits_that_do_not_bind_never_delay() -> None:
    state = SlidingWindowState(WindowLimits(None))
    for i in range(1000):
        assert state.try_admit(i * 1e-6) == i * 1e-6
    assert len(state._log) == 0  # nothing to remember when nothing is limited


def test_pause_is_honoured_and_never_shortened() -> None:
    state = SlidingWindowState(WindowLimits(100, 1000, 10000))
    state.pause_until(10.0)
    state.pause_until(4.0)
    assert state.paused_until == 10.0
    assert state.next_admission_time(3.0) == 10.0
    assert state.try_admit(3.0) == 10.0
    with pytest.raises(ValueError, match=r"next allowed at 10\.0"):
        state.admit(9.99)
    assert state.try_admit(10.0) == 10.0
    assert state.next_admission_time(10.0) == 10.0


def test_time_never_goes_backwards_in_the_log() -> None:
    state = SlidingWindowState(WindowLimits(100))
    state.admit(5.0)
    assert state.next_admission_time(1.0) == 5.0


def test_lower_limit_counts_admissions_made_under_the_higher_one() -> None:
    state = SlidingWindowState(WindowLimits(10, 100, 1000), margin=0.0)
    for t in (0.0, 0.1, 0.2, 0.3, 0.4):
        state.admit(t)
    state.replace_limits(WindowLimits(3, 100, 1000))
    # Five in the last second already: the third most recent (0.2) must leave first.
    assert state.next_admission_time(0.5) == 1.2
    state.replace_limits(WindowLimits(10, 4, 1000))
    # Four per minute: the fourth most recent (0.1) leaves the minute window at 60.1.
    assert state.next_admission_time(0.5) == 60.1


def test_memory_stays_bounded_by_the_largest_limit() -> None:
    state = SlidingWindowState(WindowLimits(5, 20, 50), margin=0.0)
    now = 0.0
    for _ in range(5000):
        now = state.next_admission_time(now)
        state.admit(now)
        assert len(state._log) <= 50
    state.replace_limits(WindowLimits(2, 3, 4))
    assert len(state._log) == 50  # lowering drops nothing: the history may matter again if limits rise
    for _ in range(100):
        now = state.next_admission_time(now)
        state.admit(now)
        assert len(state._log) <= 50


@pytest.mark.parametrize(
    "limits",
    [WindowLimits(0), WindowLimits(5, -1), WindowLimits(5, 10, 0), WindowLimits(True), WindowLimits(1.5)],  # type: ignore[arg-type]
)
def test_unusable_limits_are_refused(limits: WindowLimits) -> None:
    with pytest.raises(ConfigurationError, match="window must be an integer >= 1"):
        SlidingWindowState(limits)
    state = SlidingWindowState(WindowLimits(5))
    with pytest.raises(ConfigurationError):
        state.replace_limits(limits)
    assert state.limits == WindowLimits(5)  # a refused replacement changes nothing


@pytest.mark.parametrize("margin", [-0.01, math.inf, math.nan])
def test_unusable_margin_is_refused(margin: float) -> None:
    with pytest.raises(ConfigurationError, match="safety margin"):
        SlidingWindowState(WindowLimits(5), margin=margin)
    with pytest.raises(ConfigurationError, match="minimum margin"):
        SlidingWindowState(WindowLimits(5), min_margin=margin)


def test_window_limits_pairs_shortest_first() -> None:
    assert WindowLimits(10, 20, 60).windows() == ((1.0, 10), (60.0, 20), (3600.0, 60))
    assert WindowLimits(60).windows() == ((1.0, 60),)


def test_all_is_sorted_and_complete() -> None:
    # isort-style, as ruff's RUF022 wants it: CONSTANTS, then Classes, then functions, each alphabetical.
    assert core.__all__ == sorted(core.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in core.__all__:
        assert hasattr(core, name)


# ---------------------------------------------------------------------------------------------------------------
# Pending admissions: a request reaches the server at any moment between its admission and its answer.

HOLD = 4.0
requests_in_flight = st.lists(
    # (gap before the request is wanted, its latency up to the hold, where in [admission, answer] it arrives)
    st.tuples(st.one_of(st.floats(0, 0.5), st.floats(0, 70), st.just(0.0)), st.floats(0, HOLD), st.floats(0, 1)),
    max_size=50,
)


@settings(max_examples=300)  # cheap, and the counter-examples of send-time counting need a few hundred tries
@given(limits=limits_st, margin=margins, script=requests_in_flight)
def test_pending_admissions_keep_every_window_whatever_the_arrival_delay(
    limits: WindowLimits, margin: Margin, script: list[tuple[float, float, float]]
) -> None:
    state = SlidingWindowState(limits, margin=margin[0], min_margin=margin[1])
    in_flight: list[tuple[float, float]] = []  # (answer time, admission time)
    arrivals: list[float] = []
    now = 0.0

    def settle_answered_by(moment: float) -> None:
        for answer, admitted in sorted(entry for entry in in_flight if entry[0] <= moment):
            assert state.settle(admitted, HOLD, answer) or not limits.windows()  # unlimited: nothing kept
            in_flight.remove((answer, admitted))

    for gap, latency, where in script:
        now += gap
        while True:
            settle_answered_by(now)
            allowed = state.next_admission_time(now)
            assert allowed >= now
            if allowed == now:
                break
            now = min([allowed, *(answer for answer, _ in in_flight)])  # the next event: a free slot or an answer
        assert state.try_admit(now, HOLD) == now
        in_flight.append((now + latency, now))
        arrivals.append(now + where * latency)
    for length, limit in limits.windows():
        assert max_in_any_interval(sorted(arrivals), length) <= limit  # as the server counts them


def test_a_pending_admission_counts_until_settled_then_for_a_window_from_its_answer() -> None:
    state = SlidingWindowState(WindowLimits(1), margin=0.0)
    assert state.try_admit(0.0, hold=60.0) == 0.0
    # In flight: when it frees the window is not known; the earliest is a window from now, asked again then.
    assert state.next_admission_time(0.5) == 1.5
    assert state.next_admission_time(1.5) == 2.5
    assert state.settle(0.0, 60.0, at=2.0)
    assert state.next_admission_time(2.5) == 3.0  # a window after the answer
    assert not state.settle(0.0, 60.0, at=2.5)  # settled once


def test_an_unsettled_admission_counts_as_arriving_at_its_bound() -> None:
    state = SlidingWindowState(WindowLimits(1), margin=0.0)
    state.try_admit(0.0, hold=60.0)
    assert state.next_admission_time(60.5) == 61.0  # never settled (a crashed sender): the bound plus the window
    assert state.next_admission_time(61.0) == 61.0


def test_settling_never_moves_an_entry_later_and_release_removes_a_pending_entry() -> None:
    state = SlidingWindowState(WindowLimits(2), margin=0.0)
    state.try_admit(0.0, hold=1.0)
    state.try_admit(0.0, hold=1.0)
    assert state.settle(0.0, 1.0, at=5.0)  # an answer after the bound: the bound stays
    assert state.next_admission_time(0.2) == 1.2  # the other is still pending
    assert state.release(0.0, hold=1.0)
    assert state.next_admission_time(0.2) == 0.2
