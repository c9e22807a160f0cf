"""Async admission control for KSeF limit groups: FIFO waiters per group over a pluggable state backend.

Usage (the transport calls this right before each send, so a connection-pool wait cannot come between the
admission and the request)::

    limiter = limiter_for("prd", "nip:1234567890", RATE_LIMIT_GROUPS)
    waited = await limiter.acquire("invoiceSend")
    ...send...
    # on a 429:
    await limiter.on_rate_limited("invoiceSend", parse_retry_after(response.headers.get("Retry-After")))

The transport admits its requests as *pending* (``admit(group, pending=True)``) and settles each one when its answer
comes (`RateLimiter.settle`): until then the request counts as reaching KSeF as late as it possibly can, so no wait
between the admission and the arrival (a connection-pool queue, a busy event loop) can bring more requests into one
of KSeF's windows than it allows (`ksef_async.core.ratelimit`, "Requests in flight").

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

Per-IP groups (KSeF 2.8+): every request also counts in ``global``, and the unauthenticated operations count in
``anonymous``; KSeF counts both per IP address, not per context. `limiter_for` therefore gives every context
limiter of one environment the same *per-IP limiter*, which holds those two groups; `RateLimiter.acquire`,
`RateLimiter.on_rate_limited`, `RateLimiter.update_limits` and `RateLimiter.queued` route them there.

How a request passes both its group and ``global``: the group's head waits until its group would admit (a
read-only `Backend.next_admission`), then queues for ``global`` (FIFO, among all groups and contexts), and only
then records its group admission, at the time it is sent. So no request holds a ``global`` admission while it
waits (perhaps hours) for its group, and the group's log holds send times: recording the group first and then
waiting for ``global`` would let a delayed request and the next one reach KSeF closer together than the group
allows. The group's queue stays behind its head meanwhile, which costs nothing (its turn comes after the head's
anyway). If the group refuses after ``global`` admitted (a 429 paused it meanwhile, or another process sharing
the store took the slot), the head waits and queues for ``global`` again: the spent ``global`` admission is on
the safe side (a pending one is settled at once: it counts from then, like an answered request). A limiter that
knows no ``global`` limits skips that step (one dict lookup).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Protocol

import attrs

from ksef_async.core.ratelimit import (
    DEFAULT_SAFETY_MARGIN,
    PENDING_ARRIVAL_BOUND,
    GroupUsage,
    SlidingWindowState,
    WindowLimits,
)
from ksef_async.core.ratelimit_groups import GLOBAL_GROUP, PER_IP_GROUPS
from ksef_async.errors import ConfigurationError, RateLimitWaitExceededError

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "Admission",
    "Backend",
    "Clock",
    "LoopClock",
    "MemoryBackend",
    "RateLimiter",
    "current_limiter_wait",
    "limiter_for",
    "limiter_wait",
    "per_ip_limiter_for",
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

    async def try_admit(self, group: str, limits: WindowLimits, now: float, hold: float = 0.0) -> float:
        """Record an admission at ``now`` if every window of ``group`` allows it.

        With ``hold > 0`` the admission is pending: it counts as arriving by ``now + hold`` until `settle`
        (`ksef_async.core.ratelimit.SlidingWindowState.try_admit`).

        Returns:
            ``now`` when admitted; otherwise the earliest time (``> now``) worth asking again, nothing recorded.
        """
        ...

    async def settle(self, group: str, admitted_at: float, hold: float, at: float) -> None:
        """Record that the pending admission of ``admitted_at`` (with ``hold``) had its answer at ``at``.

        Its request then counts as arriving by ``at`` (a store with its own clock may use that clock's now).
        """
        ...

    async def pause(self, group: str, until: float) -> None:
        """Admit nothing in ``group`` before ``until``; a shorter pause never shortens a longer one."""
        ...

    async def next_admission(self, group: str, limits: WindowLimits, now: float) -> float:
        """Return the earliest time (``>= now``) at which ``try_admit`` would admit; record nothing.

        Asked only for groups whose requests must also pass ``global`` (see the module docstring).
        """
        ...

    async def release(self, group: str, admitted_at: float, hold: float = 0.0) -> None:
        """Remove one admission of ``group`` made at ``admitted_at`` with ``hold`` (its request never reached KSeF)."""
        ...

    async def usage(self, group: str, limits: WindowLimits, now: float) -> GroupUsage:
        """Return the used and remaining admissions of each window at ``now``, the next free slot and the pause."""
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

    async def try_admit(self, group: str, limits: WindowLimits, now: float, hold: float = 0.0) -> float:
        """Record an admission at ``now`` if allowed; else return the earliest time worth asking again."""
        return self._state(group, limits).try_admit(now, hold)

    async def settle(self, group: str, admitted_at: float, hold: float, at: float) -> None:
        """Record that the pending admission of ``admitted_at`` (with ``hold``) had its answer at ``at``."""
        state = self._states.get(group)
        if state is not None:
            state.settle(admitted_at, hold, at)

    async def next_admission(self, group: str, limits: WindowLimits, now: float) -> float:
        """Return the earliest time (``>= now``) at which an admission would be allowed; record nothing."""
        return self._state(group, limits).next_admission_time(now)

    async def release(self, group: str, admitted_at: float, hold: float = 0.0) -> None:
        """Remove one admission of ``group`` made at ``admitted_at`` with ``hold``."""
        state = self._states.get(group)
        if state is not None:
            state.release(admitted_at, hold)

    async def usage(self, group: str, limits: WindowLimits, now: float) -> GroupUsage:
        """Return the group's window use at ``now`` (nothing recorded)."""
        return self._state(group, limits).usage(now)

    async def pause(self, group: str, until: float) -> None:
        """Admit nothing in ``group`` before ``until``."""
        state = self._states.get(group)
        if state is None:
            # A pause may come before the first admission; the limits are set by the first try_admit.
            state = self._states[group] = SlidingWindowState(WindowLimits(None), margin=self._margin)
        state.pause_until(until)


@attrs.frozen
class Admission:
    """One request admitted by `RateLimiter.admit`: what `RateLimiter.release` needs to give it back.

    Attributes:
        group: The limit group.
        admitted_at: The admission time recorded in the group (limiter clock).
        global_admitted_at: The admission time recorded in ``global``, when the request also passed it.
        waited: Seconds waited for the admission.
        hold: 0, or for a pending admission the bound after which it counts as arrived (`RateLimiter.settle`).
    """

    group: str
    admitted_at: float
    global_admitted_at: float | None
    waited: float
    hold: float = 0.0


_max_wait: contextvars.ContextVar[float | None] = contextvars.ContextVar("ksef_limiter_max_wait")


@contextlib.contextmanager
def limiter_wait(seconds: float | None) -> Iterator[None]:
    """Bound the limiter wait of every API call made inside the block (this task and tasks it starts).

    Overrides ``ClientConfig.max_limiter_wait`` for those calls: a call whose wait would be longer raises
    `ksef_async.errors.RateLimitWaitExceededError` (with ``retry_after`` and ``group``) before anything is sent.
    ``None`` lifts the bound inside the block. Nested blocks: the innermost wins.

    Raises:
        ConfigurationError: ``seconds`` is negative or not a number.
    """
    if seconds is not None and not (isinstance(seconds, int | float) and 0 <= seconds < math.inf):
        raise ConfigurationError(f"limiter_wait: seconds must be a finite number >= 0 or None, got {seconds!r}")
    token = _max_wait.set(seconds)
    try:
        yield
    finally:
        _max_wait.reset(token)


_UNSET = object()


def current_limiter_wait(default: float | None) -> float | None:
    """The bound `limiter_wait` set for the current context, else ``default`` (the client-wide one)."""
    value: object = _max_wait.get(_UNSET)
    return default if value is _UNSET else value  # type: ignore[return-value]


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

    Every acquire of a group other than ``global`` also passes ``global`` when the limiter (or its per-IP
    limiter) has limits for it. Without ``per_ip`` the limiter holds every group itself, ``global`` included.

    Args:
        limits: Limit group name -> its limits (e.g. `ksef_async.operations.API_RATE_LIMITS`). With ``per_ip``,
            the values of the per-IP groups only fill in groups the per-IP limiter does not know yet.
        backend: Where admission logs live; default a new `MemoryBackend`.
        clock: Time source; default `LoopClock`.
        default_retry_after: Pause after a 429 that carried no usable ``Retry-After``.
        per_ip: The limiter of the groups KSeF counts per IP address (``anonymous``, ``global``), shared by the
            limiters of every context of the environment (`per_ip_limiter_for`).
    """

    def __init__(
        self,
        limits: Mapping[str, WindowLimits],
        *,
        backend: Backend | None = None,
        clock: Clock | None = None,
        default_retry_after: float = DEFAULT_RETRY_AFTER,
        per_ip: RateLimiter | None = None,
    ) -> None:
        if not math.isfinite(default_retry_after) or default_retry_after < 0:
            raise ConfigurationError(f"default_retry_after must be finite and >= 0, got {default_retry_after!r}")
        if per_ip is not None and per_ip.per_ip is not None:
            raise ConfigurationError("a per-IP limiter cannot have a per-IP limiter of its own")
        self._backend: Backend = MemoryBackend() if backend is None else backend
        self._clock: Clock = LoopClock() if clock is None else clock
        self._default_retry_after = default_retry_after
        self._groups: dict[str, _Group] = {}
        self._per_ip = per_ip
        _validate(limits)
        if per_ip is not None:
            known = per_ip.limits
            per_ip.update_limits({k: v for k, v in limits.items() if k in PER_IP_GROUPS and k not in known})
        self._set_limits({k: v for k, v in limits.items() if per_ip is None or k not in PER_IP_GROUPS})

    def __repr__(self) -> str:
        shared = "" if self._per_ip is None else f", per_ip={sorted(self._per_ip.limits)!r}"
        return f"RateLimiter(groups={sorted(self._groups)!r}{shared}, backend={self._backend!r})"

    @property
    def per_ip(self) -> RateLimiter | None:
        """The limiter of the per-IP groups this one routes them to (None: it holds them itself)."""
        return self._per_ip

    @property
    def limits(self) -> dict[str, WindowLimits]:
        """A copy of the limits in force, by group (the per-IP limiter's groups included)."""
        own = {name: group.limits for name, group in self._groups.items()}
        return own if self._per_ip is None else own | self._per_ip.limits

    def _owner(self, group: str) -> RateLimiter:
        """Return the limiter that holds ``group``: the per-IP one for ``anonymous`` and ``global``, else self."""
        per_ip = self._per_ip
        return per_ip if per_ip is not None and group in PER_IP_GROUPS else self

    def queued(self, group: str) -> int:
        """Return how many acquires of ``group`` wait behind the active one, cancelled ones excluded (O(n))."""
        state = self._owner(group)._groups.get(group)  # noqa: SLF001 - same class
        return 0 if state is None else sum(1 for future in state.waiters if not future.done())

    def update_limits(self, limits: Mapping[str, WindowLimits]) -> None:
        """Put new limits in force for the groups named (e.g. from ``GET /rate-limits``); others keep theirs.

        Recorded admissions keep counting against the new limits. A head already asleep keeps its wake-up time and
        re-checks then: a raised limit takes effect at that point, a lowered one is never broken. Groups the
        operation table does not name are kept too (KSeF may report more groups than this client knows). The
        per-IP groups go to the per-IP limiter, so they change for every context of the environment.

        Raises:
            ConfigurationError: A value is not a `WindowLimits` or holds a limit below 1.
        """
        _validate(limits)
        per_ip = self._per_ip
        if per_ip is None:
            self._set_limits(limits)
            return
        per_ip.update_limits({k: v for k, v in limits.items() if k in PER_IP_GROUPS})
        self._set_limits({k: v for k, v in limits.items() if k not in PER_IP_GROUPS})

    def _set_limits(self, limits: Mapping[str, WindowLimits]) -> None:
        for name, value in limits.items():
            group = self._groups.get(name)
            if group is None:
                self._groups[name] = _Group(value)
            else:
                group.limits = value

    async def acquire(self, group: str, *, max_wait: float | None = None) -> float:
        """Wait until one request of ``group`` may be sent, in arrival order, and record it.

        Cancelling the call gives up the place in the queue and records nothing (with a shared backend, a call
        cancelled while the store is answering may still count: the safe side).

        A group other than ``global`` is admitted only together with ``global`` when ``global`` has limits here
        or in the per-IP limiter (see the module docstring for the order).

        Args:
            group: The limit group.
            max_wait: Longest wait in seconds (None: no bound); see `admit`.

        Returns:
            The seconds waited (0.0 when admitted at once).

        Raises:
            ConfigurationError: ``group`` has no limits.
            RateLimitWaitExceededError: The wait would be longer than ``max_wait`` (nothing recorded).
        """
        return (await self.admit(group, max_wait=max_wait)).waited

    async def admit(self, group: str, *, max_wait: float | None = None, pending: bool = False) -> Admission:
        """Like `acquire`, but return the `Admission`, which `release` can give back.

        ``pending=True`` records the request as in flight: it counts as reaching KSeF as late as
        `ksef_async.core.ratelimit.PENDING_ARRIVAL_BOUND` after the admission, in every window, until `settle` is
        called with the admission when its answer comes (or `release`, when it never left). Use it for a request
        whose send may be delayed; a pending admission never settled holds its slot for that bound plus the window.

        With ``max_wait``, the limiter first estimates the wait from its own state (no API call): the group's next
        free slot plus, for the requests queued ahead, the full windows they need (a lower bound). A longer estimate
        raises at once; otherwise the call queues and raises when ``max_wait`` passes before its turn. Either way
        nothing is recorded and nothing is sent. Cancellation: as in `acquire`.

        Raises:
            ConfigurationError: ``group`` has no limits, or ``max_wait`` is negative or not a number.
            RateLimitWaitExceededError: The wait would be longer than ``max_wait``; ``retry_after`` is the estimate.
        """
        if max_wait is not None and not max_wait >= 0:
            raise ConfigurationError(f"max_wait must be a number >= 0 or None, got {max_wait!r}")
        owner = self._owner(group)
        state = owner._groups.get(group)  # noqa: SLF001 - same class
        if state is None:
            raise ConfigurationError(f"no rate limits known for group {group!r}")
        then: tuple[RateLimiter, _Group] | None = None
        if group != GLOBAL_GROUP:
            holder = self._per_ip or self
            global_state = holder._groups.get(GLOBAL_GROUP)  # noqa: SLF001 - same class
            if global_state is not None:
                then = (holder, global_state)
        start = owner._clock.now()  # noqa: SLF001 - same class
        deadline = None
        if max_wait is not None:
            estimate = await owner._estimate(group, state, start)  # noqa: SLF001 - same class
            if estimate > max_wait:
                logger.info(
                    "rate limit group %s: wait of %.1f s exceeds max_wait %g s, refused before sending",
                    group,
                    estimate,
                    max_wait,
                    extra={"group": group, "retry_after": estimate},
                )
                raise RateLimitWaitExceededError(group, estimate, max_wait)
            deadline = start + max_wait
        hold = PENDING_ARRIVAL_BOUND if pending else 0.0
        at, global_at = await owner._acquire(group, state, then, deadline=deadline, hold=hold)  # noqa: SLF001 - same class
        waited = max(0.0, at - start)
        if waited > 0:
            logger.debug("rate limit wait", extra={"group": group, "waited": waited})
        return Admission(group=group, admitted_at=at, global_admitted_at=global_at, waited=waited, hold=hold)

    async def settle(self, admission: Admission) -> None:
        """Record that the request of a pending ``admission`` has had its answer (or failed after it was sent).

        From now on it counts as having reached KSeF by now rather than by its bound, in its group and in
        ``global``. Nothing to do for an admission that was not pending. Cancellation: as `release`.
        """
        if not admission.hold:
            return
        for limiter, group, admitted_at in self._entries(admission):
            at = limiter._clock.now()  # noqa: SLF001 - same class
            await limiter._backend.settle(group, admitted_at, admission.hold, at)  # noqa: SLF001

    async def release(self, admission: Admission) -> None:
        """Give back an admission whose request never reached KSeF (connection refused, DNS failure...).

        Its group's entry and its ``global`` entry (if any) are removed, so an outage does not use up the windows.
        Never release a request that may have reached the server.

        Cancellation: with the in-memory backend the release is not interrupted (no await point inside); with a
        shared store, a cancelled release may leave the slot taken (the safe side).
        """
        for limiter, group, admitted_at in self._entries(admission):
            await limiter._backend.release(group, admitted_at, admission.hold)  # noqa: SLF001 - same class
        logger.debug("rate limit admission released", extra={"group": admission.group})

    def _entries(self, admission: Admission) -> list[tuple[RateLimiter, str, float]]:
        """The log entries ``admission`` recorded: (the limiter holding the group, the group, the time recorded)."""
        entries = [(self._owner(admission.group), admission.group, admission.admitted_at)]
        if admission.global_admitted_at is not None:
            entries.append((self._per_ip or self, GLOBAL_GROUP, admission.global_admitted_at))
        return entries

    async def usage(self, group: str) -> GroupUsage:
        """Return the used and remaining requests of ``group`` in each window and its next free slot (no API call).

        Times are on the limiter's clock (`Clock.now`); `RateLimiter.now` gives the current one. Cancellation: a
        read only; nothing to undo.

        Raises:
            ConfigurationError: ``group`` has no limits.
        """
        owner = self._owner(group)
        state = owner._groups.get(group)  # noqa: SLF001 - same class
        if state is None:
            raise ConfigurationError(f"no rate limits known for group {group!r}")
        return await owner._backend.usage(group, state.limits, owner._clock.now())  # noqa: SLF001 - same class

    async def usage_report(self) -> dict[str, GroupUsage]:
        """`usage` of every group with limits (the per-IP groups included), by group name (cancellation: as `usage`)."""
        return {group: await self.usage(group) for group in sorted(self.limits)}

    def now(self) -> float:
        """The limiter clock's current time (the scale of `GroupUsage.next_free` and ``paused_until``)."""
        return self._clock.now()

    async def _estimate(self, group: str, state: _Group, now: float) -> float:
        """A lower bound of the seconds a new acquire of ``group`` waits, from the backend's state and the queue."""
        ahead = (1 if state.busy else 0) + sum(1 for future in state.waiters if not future.done())
        usage = await self._backend.usage(group, state.limits, now)
        extra = max((ahead // w.limit * w.seconds for w in usage.windows if w.limit > 0), default=0.0)
        return max(0.0, max(usage.next_free, now) + extra - now)

    async def _acquire(
        self,
        group: str,
        state: _Group,
        then: tuple[RateLimiter, _Group] | None,
        *,
        deadline: float | None = None,
        hold: float = 0.0,
    ) -> tuple[float, float | None]:
        """Queue for ``group`` of this limiter and, as its head, get admitted (after ``then``'s group, if given).

        Returns:
            The admission time of ``group`` and of ``global`` (None when ``then`` is None).
        """
        clock = self._clock
        now = clock.now()
        if state.busy:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.waiters.append(future)
            try:
                if deadline is None:
                    await future
                else:
                    async with asyncio.timeout(max(0.0, deadline - now)):
                        await future
            except (asyncio.CancelledError, TimeoutError) as exc:
                if future.cancelled():
                    self._note_dead(state)
                elif future.done():
                    # The turn was handed to us as we were cancelled: pass it on.
                    self._hand_over(state)
                if isinstance(exc, TimeoutError) and deadline is not None:
                    retry_after = await self._estimate(group, state, clock.now())
                    raise RateLimitWaitExceededError(group, retry_after, deadline - now) from None
                raise
            now = clock.now()
        else:
            state.busy = True
        try:
            return await self._admit_as_head(group, state, then, now, deadline=deadline, hold=hold)
        finally:
            self._hand_over(state)

    async def _admit_as_head(
        self,
        group: str,
        state: _Group,
        then: tuple[RateLimiter, _Group] | None,
        now: float,
        *,
        deadline: float | None = None,
        hold: float = 0.0,
    ) -> tuple[float, float | None]:
        """As the head of ``group``, wait until it (and ``then``'s group) admit; return the admission times."""
        clock = self._clock
        backend = self._backend
        while True:
            if then is None:
                allowed = await backend.try_admit(group, state.limits, now, hold)
                if allowed <= now:
                    return now, None
            else:
                allowed = await backend.next_admission(group, state.limits, now)
                if allowed <= now:
                    # Our group would admit now: queue for global, then record the group at the send time.
                    holder, global_state = then
                    global_at, _ = await holder._acquire(GLOBAL_GROUP, global_state, None, hold=hold)  # noqa: SLF001
                    now = clock.now()
                    allowed = await backend.try_admit(group, state.limits, now, hold)
                    if allowed <= now:
                        return now, global_at
                    if hold:
                        # Never sent: the spent global admission counts from now, as an answered one would.
                        at = holder._clock.now()  # noqa: SLF001 - same class
                        await holder._backend.settle(GLOBAL_GROUP, global_at, hold, at)  # noqa: SLF001
            if deadline is not None and allowed > deadline:
                raise RateLimitWaitExceededError(group, allowed - now, max(0.0, deadline - now))
            await clock.sleep(allowed - now)
            now = clock.now()

    async def on_rate_limited(self, group: str, retry_after: float | None) -> None:
        """Pause ``group`` after a 429: every waiter of the group waits until the pause ends; other groups do not.

        A pause of ``global`` (or ``anonymous``) goes to the per-IP limiter: every context of the environment
        waits it out.

        Args:
            group: The limit group of the refused request, or the group the 429 named
                (`ksef_async.core.ratelimit_groups.rate_limited_group`).
            retry_after: Seconds from the ``Retry-After`` header (`ksef_async.errors.parse_retry_after`), or None
                to use ``default_retry_after``.
        """
        pause = self._default_retry_after if retry_after is None or not math.isfinite(retry_after) else retry_after
        pause = max(0.0, pause)
        logger.info("rate limited by KSeF", extra={"group": group, "retry_after": pause})
        owner = self._owner(group)
        await owner._backend.pause(group, owner._clock.now() + pause)  # noqa: SLF001 - same class

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


def _validate(limits: Mapping[str, WindowLimits]) -> None:
    """Raise `ConfigurationError` unless every value is a `WindowLimits` of positive limits (before any change)."""
    for name, value in limits.items():
        if not isinstance(value, WindowLimits):
            raise ConfigurationError(f"rate limits for group {name!r} must be WindowLimits, got {value!r}")
        SlidingWindowState(value, margin=0.0)


_registry: dict[tuple[str, str], RateLimiter] = {}
_per_ip_registry: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def _per_ip_limiter(environment_key: str, limits: Mapping[str, WindowLimits]) -> RateLimiter:
    """`per_ip_limiter_for` without the lock (the caller holds it)."""
    wanted = {k: v for k, v in limits.items() if k in PER_IP_GROUPS}
    limiter = _per_ip_registry.get(environment_key)
    if limiter is None:
        return _per_ip_registry.setdefault(environment_key, RateLimiter(wanted))
    known = limiter.limits
    missing = {k: v for k, v in wanted.items() if k not in known}
    if missing:
        limiter.update_limits(missing)
    return limiter


def per_ip_limiter_for(environment_key: str, limits: Mapping[str, WindowLimits]) -> RateLimiter:
    """Return the process-wide limiter of the per-IP groups (``anonymous``, ``global``) of one environment.

    Every context limiter `limiter_for` returns for ``environment_key`` routes those groups to it, so all the
    clients of the process count against one ``global`` window, as KSeF counts them (per IP address; a process
    is assumed to leave through one address). Of ``limits`` only the per-IP groups are used, and only for groups
    the limiter does not know yet; later changes go through `RateLimiter.update_limits`.
    """
    with _registry_lock:
        return _per_ip_limiter(environment_key, limits)


def limiter_for(environment_key: str, context_key: str, limits: Mapping[str, WindowLimits]) -> RateLimiter:
    """Return the process-wide limiter of one (environment, context) pair, creating it with ``limits`` if new.

    Every client object of the process that talks to the same environment for the same context shares the
    returned instance, so their requests count against one set of windows, as KSeF counts them. The per-IP groups
    (``anonymous``, ``global``) live in the environment's `per_ip_limiter_for`, shared by every context.
    ``limits`` is used only on creation (per-IP groups: only where still unknown); later changes go through
    `RateLimiter.update_limits`.

    The registry is a plain dict, not a weak one: a limiter outliving its last client keeps its admission log,
    so a client created a moment later cannot burst past what the previous one already sent. Each entry costs a
    few kilobytes (at most max(N) timestamps per group), and a process talks to few contexts.
    """
    key = (environment_key, context_key)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            per_ip = _per_ip_limiter(environment_key, limits)
            limiter = _registry[key] = RateLimiter(limits, per_ip=per_ip)
        return limiter
