"""Polling schedules without I/O: jittered exponential back-off bounded by a caller's deadline."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from ksef_async.core.validators import fraction, positive

__all__ = ["Backoff", "PollSchedule"]


@attrs.frozen
class Backoff:
    """How long to wait between two polls of an asynchronous KSeF operation.

    Attempt ``n`` (0-based) waits ``min(maximum, initial * factor**n)``, shortened by up to ``jitter`` of itself
    so that many pollers started together drift apart.

    Attributes:
        initial: First wait in seconds (default 0.5: KSeF finishes most logins within a second).
        factor: Growth per attempt (default 1.5).
        maximum: Longest single wait in seconds (default 5.0).
        jitter: Fraction of each wait that is randomised away (default 0.1).
    """

    initial: float = attrs.field(default=0.5, validator=positive)
    factor: float = attrs.field(default=1.5, validator=positive)
    maximum: float = attrs.field(default=5.0, validator=positive)
    jitter: float = attrs.field(default=0.1, validator=fraction)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Return the wait after poll number ``attempt`` (0-based); ``rand`` returns a float in [0, 1)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rand())


@attrs.define
class PollSchedule:
    """The waits of one polling loop: back-off per attempt, clipped to a deadline on the caller's clock.

    Args:
        backoff: The back-off rule.
        deadline: Clock time after which no further poll is made, or None for no deadline.
        rand: Random source for the jitter (inject a constant in tests).
    """

    backoff: Backoff
    deadline: float | None
    rand: Callable[[], float] = random.random
    attempt: int = 0

    def next_delay(self, now: float) -> float | None:
        """Return the wait before the next poll, or None when the deadline leaves no time for one."""
        if self.deadline is not None and now >= self.deadline:
            return None
        wait = self.backoff.delay(self.attempt, self.rand)
        self.attempt += 1
        if self.deadline is not None:
            # Poll one last time exactly at the deadline rather than giving up early.
            wait = min(wait, self.deadline - now)
        return max(0.0, wait)
