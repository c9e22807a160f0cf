"""Rate-limit arithmetic without I/O: KSeF's three sliding windows (1 s, 1 min, 1 h) per limit group.

KSeF counts the requests of one (context, IP) pair per limit group in the last 1 s, 60 s and 3600 s, all three at
once. A token bucket of capacity N refilled at N/T can let 2N requests through one window of length T (a full
bucket, then a refill), so this module keeps the admission log instead and holds the invariant exactly: every
half-open interval ``[t, t + T)`` contains at most N admissions, for every limited window ``(T, N)``.

Why a log of at most N entries is enough: admissions are recorded in non-decreasing time order, so one more
admission at ``x`` keeps window ``(T, N)`` within its limit iff fewer than N earlier admissions lie in
``(x - T, x]``, i.e. iff the N-th most recent admission is at or before ``x - T``. Older entries can never matter
again: when an entry drops out of an N-long log, the admission that pushed it out was at least T after it.

Safety margin: every window is treated as longer than KSeF's, by ``max(margin * T, min_margin)``: 5 % of T with a
floor of 0.25 s by default (1.25 s, 63 s and 3780 s). KSeF timestamps a request when it arrives, not when we admit
it, and the gap varies: connection-pool waits, TLS set-up of a cold burst, event-loop and GIL scheduling under load.
When a burst's first requests reach the server late and the next burst's reach it early, two admissions that
were a full window apart here land less than a window apart there. That jitter is absolute (tens to hundreds of
ms, whatever the window), so a purely proportional margin is too thin on the 1 s window: 50 ms let the simulator
refuse 2 requests of a first burst under load. The floor costs almost nothing: for every KSeF group with a
per-minute or per-hour limit those windows bind long before the 1 s one does (invoiceSend: 10/s but 30/min), so
sustained throughput is set by ``60 * 1.05`` and ``3600 * 1.05`` s, which the floor does not touch. Only a
group's per-second rate in its first burst of a minute drops, from N per 1.05 s to N per 1.25 s.

Requests in flight: a margin only bounds the gap between admission and arrival on average. Under load (a shared
connection pool draining its queue, an event loop or a machine busy with other work) requests admitted over 1.25 s
can still reach the server within 1 s. So an admission can be recorded as *pending* (``hold``): the log holds
``now + hold``, a bound on when the request can reach the server (`PENDING_ARRIVAL_BOUND`), and `settle` lowers it
to the time the answer came (the server had the request by then). Every log entry is thus an upper bound of its
request's arrival, and the check above holds the server's windows whatever the delay: an in-flight request counts
in every window until it is settled, and a settled one for a full window after its answer. While an entry is in
flight the time it leaves a window is not known yet; `next_admission_time` then answers ``now + length``, the
earliest it can be (re-asked then, it is exact once the entry is settled).
"""

from __future__ import annotations

import math
from collections import deque

import attrs

from ksef_async.errors import ConfigurationError

__all__ = [
    "DEFAULT_MIN_MARGIN",
    "DEFAULT_SAFETY_MARGIN",
    "PENDING_ARRIVAL_BOUND",
    "GroupUsage",
    "SlidingWindowState",
    "WindowLimits",
    "WindowUsage",
    "insert_in_order",
    "remove_latest",
    "window_free_time",
]

#: Fraction by which each window is lengthened: 3 s on 60 s, 180 s on 3600 s (the 1 s window gets the floor).
#: On the long windows a proportional margin costs only 5 % of sustained throughput and also covers slow sends,
#: retried connections and clock-rate drift. Use 0 only against a simulator: it also turns the floor off.
DEFAULT_SAFETY_MARGIN = 0.05

#: Seconds every window is lengthened at least, when the margin is not 0: arrival-time jitter is absolute, so
#: 5 % of the 1 s window (50 ms) is too little (see the module docstring).
DEFAULT_MIN_MARGIN = 0.25

#: Seconds within which a sent API request reaches KSeF, at the latest: the connect timeout (default 10 s) plus the
#: sending of an API body (kilobytes). A pending admission counts as arriving then until `settle` names the answer's
#: time; a request never settled (a crashed process) thus holds its slot for this long plus the window.
PENDING_ARRIVAL_BOUND = 60.0


@attrs.frozen
class WindowLimits:
    """The limits of one KSeF rate-limit group: requests allowed in any sliding 1 s, 60 s and 3600 s window.

    ``None`` means the window is not limited (public operations carry only ``perSecond``).
    """

    per_second: int | None
    per_minute: int | None = None
    per_hour: int | None = None

    def windows(self) -> tuple[tuple[float, int], ...]:
        """Return ``(window_seconds, limit)`` pairs for the limited windows, shortest first."""
        pairs = ((1.0, self.per_second), (60.0, self.per_minute), (3600.0, self.per_hour))
        return tuple((length, limit) for length, limit in pairs if limit is not None)


@attrs.frozen
class WindowUsage:
    """How much of one window of a limit group is used right now, as the limiter counts it.

    Attributes:
        seconds: The window's nominal length (1, 60 or 3600).
        limit: Requests allowed in it.
        used: Admissions recorded within it (counted over the window lengthened by the safety margin, as enforced).
        remaining: ``limit - used``, never below 0.
    """

    seconds: float
    limit: int
    used: int
    remaining: int


@attrs.frozen
class GroupUsage:
    """The state of one limit group, read without any API call (health endpoints, metrics).

    Attributes:
        windows: One entry per limited window, shortest first.
        next_free: The earliest time (on the limiter's clock, ``>= now``) at which one more request would be
            admitted, ignoring requests already queued.
        paused_until: The end of the latest server-imposed pause (a 429's ``Retry-After``) on the same clock;
            ``0.0`` when never paused. The group is paused while ``paused_until > now``.
    """

    windows: tuple[WindowUsage, ...]
    next_free: float
    paused_until: float


def _effective_windows(limits: WindowLimits, margin: float, min_margin: float) -> tuple[tuple[float, int], ...]:
    """Return ``(lengthened_window, limit)`` pairs, rejecting limits that admit nothing."""
    windows = []
    for length, limit in limits.windows():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"rate limit for the {length:g} s window must be an integer >= 1, got {limit!r}")
        windows.append((length + max(length * margin, min_margin), limit))
    return tuple(windows)


class SlidingWindowState:
    """The admission log of one limit group and the arithmetic that keeps every sliding window within its limit.

    All methods take the current time explicitly (seconds on any monotonic scale shared by all calls); nothing
    here reads a clock or sleeps. Admissions must be recorded in non-decreasing time order, which a FIFO caller
    does naturally; `next_admission_time` never answers earlier than the last admission for that reason.

    The log holds, per admission, the latest time its request can have reached the server: the admission time, or
    for a pending admission ``now + hold`` until `settle` (see the module docstring). It is kept sorted.

    Memory is bounded: one deque of at most ``max(N)`` timestamps over the limited windows (after lower limits
    replace higher ones, as many as were recorded then); `next_admission_time` is O(1): one deque lookup near its
    right end per window, at most three windows. Recording, settling and releasing walk only the entries later than
    the one they touch: the pending ones, at most ``min(N)`` (each counts in every window until settled).

    Args:
        limits: The group's limits.
        margin: Fraction by which every window is treated as longer than KSeF's (see `DEFAULT_SAFETY_MARGIN`).
        min_margin: Seconds by which every window is lengthened at least; ``None`` means `DEFAULT_MIN_MARGIN`,
            or 0 when ``margin`` is 0 (exact windows, as a simulator needs).

    Raises:
        ConfigurationError: A limit is not a positive integer or a margin is negative or not finite.
    """

    __slots__ = ("_last", "_limits", "_log", "_margin", "_min_margin", "_paused_until", "_windows")

    def __init__(
        self, limits: WindowLimits, *, margin: float = DEFAULT_SAFETY_MARGIN, min_margin: float | None = None
    ) -> None:
        if not math.isfinite(margin) or margin < 0:
            raise ConfigurationError(f"rate-limit safety margin must be a finite fraction >= 0, got {margin!r}")
        if min_margin is None:
            min_margin = DEFAULT_MIN_MARGIN if margin > 0 else 0.0
        if not math.isfinite(min_margin) or min_margin < 0:
            raise ConfigurationError(f"rate-limit minimum margin must be finite seconds >= 0, got {min_margin!r}")
        self._margin = margin
        self._min_margin = min_margin
        self._windows = _effective_windows(limits, margin, min_margin)
        self._limits = limits
        self._log: deque[float] = deque(maxlen=max((n for _, n in self._windows), default=0))
        self._paused_until = -math.inf
        self._last = -math.inf

    @property
    def limits(self) -> WindowLimits:
        """The limits in force."""
        return self._limits

    @property
    def margin(self) -> float:
        """The safety margin, as a fraction of each window's length."""
        return self._margin

    @property
    def min_margin(self) -> float:
        """The least lengthening of each window, in seconds."""
        return self._min_margin

    @property
    def paused_until(self) -> float:
        """The end of the current server-imposed pause (``-inf`` when never paused)."""
        return self._paused_until

    def __repr__(self) -> str:
        return (
            f"SlidingWindowState({self._limits!r}, margin={self._margin!r}, min_margin={self._min_margin!r},"
            f" recorded={len(self._log)})"
        )

    def next_admission_time(self, now: float) -> float:
        """Return the earliest time ``>= now`` at which one more admission keeps every window within its limit.

        The answer also respects the pause and never precedes the last recorded admission (FIFO order). When the
        entry that decides is still pending, the answer is the earliest it can be (``now`` plus the window).
        """
        free = window_free_time(self._log, self._windows, max(now, self._last))
        return max(now, self._paused_until, self._last, free)

    def admit(self, now: float) -> None:
        """Record an admission at ``now``.

        Raises:
            ValueError: ``now`` is earlier than `next_admission_time` allows (a caller bug: recording it would
                break a window or the time order).
        """
        allowed = self.next_admission_time(now)
        if allowed > now:
            raise ValueError(f"admission at {now!r} breaks a rate-limit window or pause; next allowed at {allowed!r}")
        insert_in_order(self._log, now)
        self._last = now

    def try_admit(self, now: float, hold: float = 0.0) -> float:
        """Record an admission at ``now`` if allowed and return ``now``; otherwise record nothing.

        Args:
            now: The current time.
            hold: 0 for a request that counts as arriving now; else the admission is pending, recorded as
                arriving by ``now + hold`` until `settle` (see the module docstring).

        Returns:
            ``now`` when admitted, else the earliest time at which an admission would be allowed (``> now``).
        """
        allowed = self.next_admission_time(now)
        if allowed <= now:
            insert_in_order(self._log, now + hold)
            self._last = now
            return now
        return allowed

    def settle(self, admitted_at: float, hold: float, at: float) -> bool:
        """Record that the pending admission of ``admitted_at`` reached the server by ``at`` (its answer came).

        Its entry ``admitted_at + hold`` becomes ``at`` (never later than it was), so the request counts for a
        window from its answer instead of until the bound.

        Returns:
            Whether the entry was found (it may have left a bounded log, or been settled or released already).
        """
        bound = admitted_at + hold
        if not remove_latest(self._log, bound):
            return False
        insert_in_order(self._log, min(at, bound))
        return True

    def release(self, admitted_at: float, hold: float = 0.0) -> bool:
        """Remove one admission recorded at ``admitted_at`` (a request that never reached the server).

        The most recent entry equal to ``admitted_at + hold`` (the admission as recorded, ``hold`` as given to
        `try_admit`) is removed; the FIFO floor (`next_admission_time` never answers earlier than the last
        admission) is kept.

        Returns:
            Whether such an entry was found (it may already have left a bounded log).
        """
        return remove_latest(self._log, admitted_at + hold)

    def usage(self, now: float) -> GroupUsage:
        """Return what is used and left in each window at ``now``, and the next free slot; records nothing."""
        windows = []
        log = self._log
        size = len(log)
        nominal = self._limits.windows()
        for (length, limit), (seconds, _) in zip(self._windows, nominal, strict=True):
            used = 0
            start = now - length
            while used < size and log[size - 1 - used] > start:
                used += 1
            windows.append(WindowUsage(seconds=seconds, limit=limit, used=used, remaining=max(0, limit - used)))
        paused = self._paused_until if math.isfinite(self._paused_until) else 0.0
        return GroupUsage(windows=tuple(windows), next_free=self.next_admission_time(now), paused_until=paused)

    def pause_until(self, until: float) -> None:
        """Admit nothing before ``until`` (a 429's ``Retry-After``); a shorter pause never shortens a longer one."""
        self._paused_until = max(self._paused_until, until)

    def replace_limits(self, limits: WindowLimits) -> None:
        """Put new limits in force (e.g. from ``GET /rate-limits``); recorded admissions keep counting.

        Nothing recorded is dropped here (the log may only grow to the new ``max(N)``), so a lower limit counts all
        the history it needs and a limit lowered then raised again still sees it. Entries leave the log only when
        an admission pushes them out of a log at least ``max(N)`` long, i.e. when an admission has been recorded at
        least the longest window's length after them, provided the largest limit belongs to the longest window
        (true of every KSeF group: N grows with T). A window that was unlimited before has only the history the
        other windows kept.

        Raises:
            ConfigurationError: A limit is not a positive integer.
        """
        self._windows = _effective_windows(limits, self._margin, self._min_margin)
        self._limits = limits
        largest = max((n for _, n in self._windows), default=0)
        self._log = deque(self._log, maxlen=max(largest, len(self._log)))


def insert_in_order(log: deque[float], value: float) -> None:
    """Insert ``value`` into the sorted ``log`` after equal entries; a full log drops its earliest entry first.

    The walk starts at the right end, where new values land: O(number of later entries).
    """
    if log.maxlen == 0:
        return
    if len(log) == log.maxlen:
        log.popleft()
    index = len(log)
    while index and log[index - 1] > value:
        index -= 1
    log.insert(index, value)


def remove_latest(log: deque[float], value: float) -> bool:
    """Remove the most recent entry equal to ``value`` from the sorted ``log``; False when there is none."""
    for offset in range(len(log) - 1, -1, -1):
        if log[offset] == value:
            del log[offset]
            return True
        if log[offset] < value:
            break
    return False


def window_free_time(log: deque[float], windows: tuple[tuple[float, int], ...], horizon: float) -> float:
    """The earliest time every ``(length, limit)`` window has room for one more request (``-inf``: none is full).

    ``log`` holds the arrival bounds, sorted; the ``limit``-th most recent must leave its window before the next
    request enters it. An entry after ``horizon`` (the later of now and the last admission) is pending: it frees its
    window no sooner than a window after ``horizon``.
    """
    free = -math.inf
    size = len(log)
    for length, limit in windows:
        if size >= limit:
            free = max(free, min(log[-limit], horizon) + length)
    return free
