"""Wait out announced KSeF outages: when API calls fail, ask the status service and wait instead of retrying.

The engines call `OutageGuard.wait_if_announced` after a transient failure (5xx, timeout, connection error that
survived the transport's own retries). The guard asks the status service (Latarnia, cached); only when it
announces ``MAINTENANCE``, ``FAILURE`` or ``TOTAL_FAILURE`` does it wait, polling modestly (``poll_interval``)
until the state is ``AVAILABLE`` again, at most ``max_wait`` seconds per wait. ``UNKNOWN`` (unreachable, an error,
nonsense) and ``AVAILABLE`` return at once, so the caller behaves as without a guard. Every window seen is kept
(`OutageGuard.windows`) with the offline deadline for invoices issued during it, for the reports.

Waiting is a plain (cancellable) sleep: a send stopped while waiting leaves the same resumable state as one
stopped in any other wait.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.status_service import (
    OutageWindow,
    ServiceState,
    ServiceStatus,
    current_outage,
    outage_windows,
)
from ksef_async.errors import (
    AmbiguousRequestError,
    ConfigurationError,
    RateLimitedError,
    ServerError,
    TransportError,
)

__all__ = [
    "TRANSIENT_ERRORS",
    "OutageGuard",
    "OutageNotice",
    "OutagePolicy",
    "StatusSource",
    "guarded",
]

T = TypeVar("T")
TRANSIENT_ERRORS = (TransportError, ServerError)
"""Failures after which the status service is consulted (429s are rate limits, not outages)."""

logger = get_logger("outage")


class StatusSource(Protocol):
    """Anything that answers the current status (`ksef_async.status_service.StatusServiceClient`)."""

    async def status(self) -> ServiceStatus:
        """The current state; ``UNKNOWN`` instead of raising."""
        ...


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen
class OutagePolicy:
    """How long and how often to wait during an announced outage.

    Attributes:
        max_wait: Longest single wait in seconds (default 2 h); afterwards the caller goes on as without a guard.
        poll_interval: Seconds between status checks while waiting (default 60: Latarnia is polled modestly).
    """

    max_wait: float = attrs.field(default=7200.0)
    poll_interval: float = attrs.field(default=60.0)

    def __attrs_post_init__(self) -> None:
        if not self.max_wait >= 0 or not self.poll_interval > 0:
            raise ConfigurationError("outage policy: max_wait must be >= 0 and poll_interval > 0")


@attrs.frozen
class OutageNotice:
    """Progress of a wait, for logs and progress displays.

    Attributes:
        state: The state KSeF is reported in (or ``AVAILABLE`` when the wait ended).
        since: When the outage started (``None`` when no message says).
        waited: Seconds waited so far.
        finished: The wait is over (``True`` also when it gave up: see ``gave_up``).
        gave_up: ``max_wait`` passed before the outage ended.
    """

    state: ServiceState
    since: dt.datetime | None
    waited: float
    finished: bool = False
    gave_up: bool = False

    @property
    def message(self) -> str:
        """The human line, e.g. ``"KSeF reports FAILURE since 2026-01-31T11:27:00+00:00; waiting"``."""
        since = f" since {self.since.isoformat()}" if self.since is not None else ""
        if self.gave_up:
            return f"KSeF reports {self.state.value}{since}; stopped waiting after {self.waited:.0f} s"
        if self.finished:
            return f"KSeF is available again after {self.waited:.0f} s of waiting"
        return f"KSeF reports {self.state.value}{since}; waiting"


class OutageGuard:
    """Consults the status service after API failures and waits while it announces an outage.

    Args:
        status: The status source (a `ksef_async.status_service.StatusServiceClient`).
        policy: Wait bounds.
        on_notice: Receives every `OutageNotice` (the batch engine turns them into events).
        sleep: Async sleep (tests inject a fast one).
        monotonic: Clock of ``max_wait``.
        now: Aware UTC wall clock.
    """

    def __init__(
        self,
        status: StatusSource,
        policy: OutagePolicy | None = None,
        *,
        on_notice: Callable[[OutageNotice], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.status = status
        self.policy = policy or OutagePolicy()
        self.on_notice = on_notice
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now
        self._windows: dict[tuple[int | None, str, dt.datetime | None], OutageWindow] = {}
        self._lock = asyncio.Lock()
        self.waits = 0
        """Waits that happened (a concurrent failure joining a running wait does not count)."""
        self._last_outcome = False
        self._finished = 0

    @property
    def windows(self) -> tuple[OutageWindow, ...]:
        """Every outage window seen while waiting, oldest first, each in its latest known form."""
        return tuple(sorted(self._windows.values(), key=lambda w: w.start or dt.datetime.min.replace(tzinfo=dt.UTC)))

    def report(self) -> list[dict[str, Any]]:
        """The windows as JSON objects (with ``sendDeadline``), for batch and online reports."""
        return [w.to_json() for w in self.windows]

    def _remember(self, status: ServiceStatus) -> OutageWindow | None:
        for window in outage_windows(status.messages):
            key = (window.event_id, window.category, None if window.event_id is not None else window.start)
            held = self._windows.get(key)
            if held is None or not (held.end is not None and window.end is None):
                self._windows[key] = window  # a window with its end replaces the open form of the same event
        return current_outage(status.messages, self._now())

    def _emit(self, notice: OutageNotice) -> None:
        level = logger.info if notice.finished and not notice.gave_up else logger.warning
        level(notice.message, extra=extras(state=notice.state.value, waited=round(notice.waited, 1)))
        if self.on_notice is not None:
            self.on_notice(notice)

    async def wait_if_announced(self, error: BaseException | None = None) -> bool:
        """After a failed call: wait while the status service announces an outage.

        Returns:
            ``True`` when an announced outage was waited out (KSeF is reported available again): retrying is
            worthwhile. ``False`` when no outage is announced (or the state is unknown) or ``max_wait`` passed:
            the caller carries on as it would without a guard.
        """
        if error is not None and (isinstance(error, RateLimitedError) or not isinstance(error, TRANSIENT_ERRORS)):
            return False
        seen = self._finished
        async with self._lock:  # concurrent failures share one wait (and one stream of status requests)
            if self._finished != seen:
                # A wait ended while this caller queued: share its outcome instead of waiting max_wait again.
                return self._last_outcome
            status = await self.status.status()
            if not status.outage:
                return False
            self.waits += 1
            try:
                self._last_outcome = await self._wait(status)
            finally:
                self._finished += 1
            return self._last_outcome

    async def _wait(self, status: ServiceStatus) -> bool:
        started = self._monotonic()
        window = self._remember(status)
        self._emit(OutageNotice(status.state, window.start if window else None, 0.0))
        while True:
            waited = self._monotonic() - started
            remaining = self.policy.max_wait - waited
            if remaining <= 0:
                since = window.start if window else None
                self._emit(OutageNotice(status.state, since, waited, finished=True, gave_up=True))
                return False
            await self._sleep(min(self.policy.poll_interval, remaining))
            latest = await self.status.status()
            if latest.state is ServiceState.UNKNOWN:
                continue  # the status service itself is down: keep the last known state until max_wait
            if latest.messages:
                window = self._remember(latest) or window
            if not latest.outage:
                await self._refresh_end()
                self._emit(OutageNotice(ServiceState.AVAILABLE, None, self._monotonic() - started, finished=True))
                return True
            if latest.state is not status.state:
                status = latest
                self._emit(OutageNotice(status.state, window.start if window else None, self._monotonic() - started))

    async def _refresh_end(self) -> None:
        """Once available again: read ``/messages`` for the ``FAILURE_END`` of the windows still open."""
        messages_of = getattr(self.status, "messages", None)
        if messages_of is None or not any(w.ongoing for w in self._windows.values()):
            return
        messages = await messages_of()
        if messages:
            self._remember(ServiceStatus(ServiceState.AVAILABLE, tuple(messages)))

    async def call(self, fn: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn``; after a transient failure during an announced outage, wait it out, then retry (or raise).

        Args:
            fn: The call (called again on retry).
            retry: Whether repeating ``fn`` is safe; when false, the error is raised after the wait, so the caller
                can check what happened before it repeats anything.
        """
        while True:
            try:
                return await fn()
            except TRANSIENT_ERRORS as exc:
                # An ambiguous request may have taken effect: never repeated here, whatever ``retry`` says.
                if not await self.wait_if_announced(exc) or not retry or isinstance(exc, AmbiguousRequestError):
                    raise


async def guarded(guard: OutageGuard | None, fn: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
    """``guard.call(fn)``, or just ``fn()`` without a guard (for call sites where the guard is optional)."""
    if guard is None:
        return await fn()
    return await guard.call(fn, retry=retry)
