"""Whether KSeF accepts connections: while it does not, one probe at a time instead of every caller retrying.

When a connection to KSeF cannot be made (refused, DNS failure, connect timeout), nothing reached KSeF. Instead of
every waiting call retrying on its own schedule (hundreds of attempts during an outage, each also taking a rate
limit slot), the transport marks KSeF *unreachable*: from then on one call at a time is let through as a probe,
with growing pauses between probes (``initial`` doubling up to ``maximum``, 1 s by default, so the first call
after recovery goes out within about a second). Every other call waits, without a limiter slot, until a probe
gets any answer (KSeF is reachable again: all of them proceed at once) or until its own deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable

from ksef_async._logging import extras, get_logger
from ksef_async.errors import ConfigurationError, TransportError

__all__ = ["Reachability"]

logger = get_logger("transport")


class Reachability:
    """Shared reachability state of one API transport (every call of a client goes through it).

    Args:
        initial: Seconds between the first failed connection and the first probe (default 0.25).
        maximum: Longest pause between two probes (default 1.0).
        clock: Monotonic clock in seconds (the waits themselves are on the event loop).
    """

    def __init__(
        self, *, initial: float = 0.25, maximum: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (0 < initial <= maximum < math.inf):
            raise ConfigurationError(f"probe pauses must satisfy 0 < initial <= maximum, got {initial}, {maximum}")
        self._initial = initial
        self._maximum = maximum
        self._clock = clock
        self._up = True
        self._down_since = 0.0
        self._delay = initial
        self._next_probe = 0.0
        self._probing = False
        self._changed = asyncio.Event()
        self.failures = 0
        """Connections that could not be made since KSeF was last reachable."""
        self.probes = 0
        """Probes sent while KSeF was unreachable (all outages)."""

    def __repr__(self) -> str:
        return f"Reachability(up={self._up}, failures={self.failures}, probes={self.probes})"

    @property
    def up(self) -> bool:
        """Whether the last connection attempt (or probe) succeeded."""
        return self._up

    async def turn(self, deadline: float | None, what: str) -> bool:
        """Wait until this call may try to connect.

        Args:
            deadline: Clock time after which the call gives up waiting (None: wait for ever).
            what: The operation, for the error message.

        Returns:
            ``True`` when the call goes as the probe: it must then report `succeeded`, `failed` or `abandoned`.

        Raises:
            TransportError: KSeF stayed unreachable until ``deadline`` (this call sent nothing).

        Cancellation: the call gives up its wait; nothing was sent.
        """
        while not self._up:
            now = self._clock()
            if not self._probing and now >= self._next_probe:
                self._probing = True
                self.probes += 1
                return True
            if deadline is not None and now >= deadline:
                raise self.gave_up(what)
            wake = self._next_probe if not self._probing else now + self._maximum
            if deadline is not None:
                wake = min(wake, deadline)
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=max(0.001, wake - now))
        return False

    def gave_up(self, what: str) -> TransportError:
        """The error of a call ``what`` that stops at its deadline while KSeF is unreachable (it sent nothing)."""
        down = self._clock() - self._down_since if not self._up else 0.0
        return TransportError(
            f"{what}: KSeF unreachable for {down:.1f} s ({self.failures} failed connections); gave up, nothing was sent"
        )

    def succeeded(self) -> None:
        """A connection was made (any HTTP answer): KSeF is reachable; every waiting call proceeds."""
        self._probing = False
        if not self._up:
            logger.info(
                "KSeF reachable again after %.1f s and %d failed connections",
                self._clock() - self._down_since,
                self.failures,
                extra=extras(failures=self.failures),
            )
            self._up = True
            self.failures = 0
            self._delay = self._initial
        self._pulse()

    def failed(self, *, probe: bool) -> None:
        """A connection could not be made; ``probe`` says whether it was the probe's."""
        now = self._clock()
        self.failures += 1
        if self._up:
            self._up = False
            self._down_since = now
            self._delay = self._initial
            self._next_probe = now + self._delay
            logger.warning(
                "KSeF unreachable: one probe at a time from now on, every %.2f-%.2f s",
                self._initial,
                self._maximum,
                extra=extras(failures=self.failures),
            )
        elif probe:
            self._delay = min(self._maximum, self._delay * 2)
            self._next_probe = now + self._delay
        if probe:
            self._probing = False
        self._pulse()

    def abandoned(self) -> None:
        """The probe ended without telling (cancelled, or a failure that says nothing about reachability)."""
        self._probing = False
        self._pulse()

    def _pulse(self) -> None:
        """Wake every waiting call so that it looks at the state again."""
        self._changed.set()
        self._changed = asyncio.Event()
