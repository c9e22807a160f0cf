"""Async admission control for KSeF limit groups: FIFO waiters per group over a pluggable state backend.

Usage (the transport calls this right before each send, so a connection-pool wait cannot come between the
admission and the request)::

    limiter = limiter_for("prd", "nip:1234567890", RATE_LIMIT_GROUPS)
    waited = await limiter.acquire("invoiceSend")
    ...send...
    # on a 429:
    await limiter.on_rate_limited("invoiceSend", parse_retry_after(response.headers.get("Retry-After")))

Design:

- Per group, one task at a time (the *head*) talks to the backend; everyone else waits on a future in a deque.
  The head asks `Backend.try_admit`; if refused it sleeps until the time the backend names and asks again. When it
  is admitted (or cancelled) it hands the turn to the next live waiter. A later waiter therefore never overtakes
  an earlier one, and every acquire is O(1) however many are queued.
- A cancelled waiter leaves its (already cancelled) future in the deque; the hand-over skips it, and the deque is
  compacted when dead entries outnumber live ones, so cancellations cannot make it grow without bound. A head
  cancelled while sleeping has recorded nothing, so the next waiter is admitted at the very time it would have been.
- The backend admits-or-refuses atomically instead of reserving a future slot: a reservation abandoned by a
  cancelled waiter would have to be undone, in every backend, and undoing it in a bounded log is not possible
  without keeping evicted history. ``try_admit`` maps onto one atomic script in a shared store (e.g. a Redis
  sorted set per group: trim, count, add), where waiters of several processes simply retry at the named time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from ksef_async.core.ratelimit import DEFAULT_SAFETY_MARGIN, SlidingWindowState, WindowLimits
from ksef_async.errors import ConfigurationError

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "Backend",
    "Clock",
    "LoopClock",
    "MemoryBackend",
    "RateLimiter",
    "limiter_for",
]

logger = logging.getLogger("ksef_async.ratelimit")

#: Pause (seconds) after a 429 without a usable ``Retry-After``: the spec's example value for ``RetryAfter``.
#: KSeF documents the header on every 429, so this is a fallback, chosen long because blocks grow on repeats.
DEFAULT_RETRY_AFTER = 30.0

# Compact a group's waiter deque once this many cancelled entries sit in it and they outnumber the live ones.
_COMPACT_MIN_DEAD = 64


class Clock(Protocol):
    """Time source of the limiter: tests inject a fake; a shared backend needs a clock all processes share."""

    def now(self) -> float:
        """Return the current time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` (cancellable)."""
        ...


class LoopClock:
    """The running asyncio loop's monotonic clock (``loop.time()``) and ``asyncio.sleep``."""

    def now(self) -> float:
        """Return the running loop's time."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running loop."""
        await asyncio.sleep(seconds)


class Backend(Protocol):
    """Where the admission logs live: in this process (`MemoryBackend`) or in a store shared by processes.

    Each method is atomic with respect to the others for the same group. Limits travel with every call, so a
    shared store never holds stale limits and every process may read ``GET /rate-limits`` on its own.
    """

    async def try_admit(self, group: str, limits: WindowLimits, now: float) -> float:
        """Record an admission at ``now`` if every window of ``group`` allows it.

        Returns:
            ``now`` when admitted; otherwise the earliest time (``> now``) worth asking again, nothing recorded.
        """
        ...

    async def pause(self, group: str, until: float) -> None:
        """Admit nothing in ``group`` before ``until``; a shorter pause never shortens a longer one."""
        ...


class MemoryBackend:
    """Admission logs in this process: one `SlidingWindowState` per group.

    Args:
        margin: Fraction by which every window is lengthened (see `DEFAULT_SAFETY_MARGIN`).
    """

    def __init__(self, *, margin: float = DEFAULT_SAFETY_MARGIN) -> None:
        SlidingWindowState(WindowLimits(None), margin=margin)  # validates the margin now, not at first use
        self._margin = margin
        self._states: dict[str, SlidingWindowState] = {}

    def __repr__(self) -> str:
        return f"MemoryBackend(margin={self._margin!r}, groups={sorted(self._states)!r})"

    def _state(self, group: str, limits: WindowLimits) -> SlidingWindowState:
        state = self._states.get(group)
        if state is None:
            state = self._states[group] = SlidingWindowState(limits, margin=self._margin)
        elif state.limits is not limits and state.limits != limits:
            state.replace_limits(limits)
        return state

    async def try_admit(self, group: str, limits: WindowLimits, now: float) -> float:
        """Record an admission at ``now`` if allowed; else return the earliest time worth asking again."""
        return self._state(group, limits).try_admit(now)

    async def pause(self, group: str, until: float) -> None:
        """Admit nothing in ``group`` before ``until``."""
        state = self._states.get(group)
        if state is None:
            # A pause may come before the first admission; the limits are set by the first try_admit.
            state = self._states[group] = SlidingWindowState(WindowLimits(None), margin=self._margin)
        state.pause_until(until)


class _Group:
    """The FIFO of one limit group: whether a head is active, the futures queued behind it, a dead-entry hint."""

    __slots__ = ("busy", "dead", "limits", "waiters")

    def __init__(self, limits: WindowLimits) -> None:
        self.limits = limits
        self.busy = False
        self.dead = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class RateLimiter:
    """Admits requests per KSeF limit group so that no sliding window ever exceeds its limit.

    One instance serves one (environment, context) pair; share it between clients with `limiter_for`. It may be
    used from one event loop at a time (no thread safety).

    Args:
        limits: Limit group name -> its limits (by default the operation table's values).
        backend: Where admission logs live; default a new `MemoryBackend`.
        clock: Time source; default `LoopClock`.
        default_retry_after: Pause after a 429 that carried no usable ``Retry-After``.
    """

    def __init__(
        self,
        limits: Mapping[str, WindowLimits],
        *,
        backend: Backend | None = None,
        clock: Clock | None = None,
        default_retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        if not math.isfinite(default_retry_after) or default_retry_after < 0:
            raise ConfigurationError(f"default_retry_after must be finite and >= 0, got {default_retry_after!r}")
        self._backend: Backend = MemoryBackend() if backend is None else backend
        self._clock: Clock = LoopClock() if clock is None else clock
        self._default_retry_after = default_retry_after
        self._groups: dict[str, _Group] = {}
        self.update_limits(limits)

    def __repr__(self) -> str:
        return f"RateLimiter(groups={sorted(self._groups)!r}, backend={self._backend!r})"

    @property
    def limits(self) -> dict[str, WindowLimits]:
        """A copy of the limits in force, by group."""
        return {name: group.limits for name, group in self._groups.items()}

    def queued(self, group: str) -> int:
        """Return how many acquires of ``group`` wait behind the active one, cancelled ones excluded (O(n))."""
        state = self._groups.get(group)
        return 0 if state is None else sum(1 for future in state.waiters if not future.done())

    def update_limits(self, limits: Mapping[str, WindowLimits]) -> None:
        """Put new limits in force for the groups named (e.g. from ``GET /rate-limits``); others keep theirs.

        Recorded admissions keep counting against the new limits. A head already asleep keeps its wake-up time and
        re-checks then: a raised limit takes effect at that point, a lowered one is never broken.

        Raises:
            ConfigurationError: A value is not a `WindowLimits` or holds a limit below 1.
        """
        for name, value in limits.items():
            if not isinstance(value, WindowLimits):
                raise ConfigurationError(f"rate limits for group {name!r} must be WindowLimits, got {value!r}")
            # Validate before anything changes, so a bad value never half-applies.
            SlidingWindowState(value, margin=0.0)
        for name, value in limits.items():
            group = self._groups.get(name)
            if group is None:
                self._groups[name] = _Group(value)
            else:
                group.limits = value

    async def acquire(self, group: str) -> float:
        """Wait until one request of ``group`` may be sent, in arrival order, and record it.

        Cancelling the call gives up the place in the queue and records nothing (with a shared backend, a call
        cancelled while the store is answering may still count: the safe side).

        Returns:
            The seconds waited (0.0 when admitted at once).

        Raises:
            ConfigurationError: ``group`` has no limits.
        """
        state = self._groups.get(group)
        if state is None:
            raise ConfigurationError(f"no rate limits known for group {group!r}")
        clock = self._clock
        start = now = clock.now()
        if state.busy:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.waiters.append(future)
            try:
                await future
            except asyncio.CancelledError:
                if future.cancelled():
                    self._note_dead(state)
                else:
                    # The turn was handed to us as we were cancelled: pass it on.
                    self._hand_over(state)
                raise
            now = clock.now()
        else:
            state.busy = True
        try:
            while True:
                allowed = await self._backend.try_admit(group, state.limits, now)
                if allowed <= now:
                    break
                await clock.sleep(allowed - now)
                now = clock.now()
        finally:
            self._hand_over(state)
        waited = now - start
        if waited > 0:
            logger.debug("rate limit wait", extra={"group": group, "waited": waited})
        return waited

    async def on_rate_limited(self, group: str, retry_after: float | None) -> None:
        """Pause ``group`` after a 429: every waiter of the group waits until the pause ends; other groups do not.

        Args:
            group: The limit group of the refused request.
            retry_after: Seconds from the ``Retry-After`` header (`ksef_async.errors.parse_retry_after`), or None
                to use ``default_retry_after``.
        """
        pause = self._default_retry_after if retry_after is None or not math.isfinite(retry_after) else retry_after
        pause = max(0.0, pause)
        logger.info("rate limited by KSeF", extra={"group": group, "retry_after": pause})
        await self._backend.pause(group, self._clock.now() + pause)

    def _hand_over(self, state: _Group) -> None:
        """Give the turn to the oldest live waiter, or mark the group idle."""
        waiters = state.waiters
        while waiters:
            future = waiters.popleft()
            if future.done():  # cancelled while queued
                state.dead = max(0, state.dead - 1)
                continue
            future.set_result(None)
            return
        state.busy = False

    def _note_dead(self, state: _Group) -> None:
        """Count a cancelled queued waiter; drop dead entries once they outnumber live ones (amortised O(1)).

        The count is only a hint (a cancelled future may be skipped by a hand-over before its task gets here):
        it decides when to compact, never who goes next.
        """
        state.dead += 1
        if state.dead >= _COMPACT_MIN_DEAD and state.dead * 2 > len(state.waiters):
            state.waiters = deque(f for f in state.waiters if not f.done())
            state.dead = 0


_registry: dict[tuple[str, str], RateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(environment_key: str, context_key: str, limits: Mapping[str, WindowLimits]) -> RateLimiter:
    """Return the process-wide limiter of one (environment, context) pair, creating it with ``limits`` if new.

    Every client object of the process that talks to the same environment for the same context shares the
    returned instance, so their requests count against one set of windows, as KSeF counts them. ``limits`` is
    used only on creation; later changes go through `RateLimiter.update_limits`.

    The registry is a plain dict, not a weak one: a limiter outliving its last client keeps its admission log,
    so a client created a moment later cannot burst past what the previous one already sent. Each entry costs a
    few kilobytes (at most max(N) timestamps per group), and a process talks to few contexts.
    """
    key = (environment_key, context_key)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = RateLimiter(limits)
        return limiter
