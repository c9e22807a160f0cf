"""The 21184 policy of online sending: retry one invoice with bounded backoff, then move to a fresh session.

KSeF answers 400 21184 "Sesja tymczasowo niedostępna" on POST /sessions/online/{ref}/invoices while the session is
under maintenance; the invoice was not accepted, and KSeF says to retry later or to open a new session for the
remaining invoices. `SessionUnavailablePolicy` says how long to insist on the same session and whether
`ksef_async.online.send_online` may then close it and continue in a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.validators import at_least_one, non_negative
from ksef_async.errors import SessionTemporarilyUnavailableError

__all__ = ["SessionUnavailablePolicy", "send_retrying_unavailable"]

T = TypeVar("T")

logger = get_logger("online")


@attrs.frozen(kw_only=True)
class SessionUnavailablePolicy:
    """What `send_online` does when KSeF answers 21184 (session temporarily unavailable).

    Attributes:
        attempts: Sends of one invoice into one session, the first included (default 4); then the session is
            given up.
        base_delay: Seconds before the first retry (default 2); each later wait doubles.
        max_delay: Cap of one wait in seconds (default 30).
        reopen: When a session is given up, close it and send the invoices it did not accept in a fresh online
            session (default True). When False, `send_online` closes the session and raises the
            `SessionTemporarilyUnavailableError`; nothing is resent.
        max_sessions: Sessions (the first included) one form's invoices may use before giving up (default 3).
        sleep: Async sleep (tests inject a fake that does not wait).
    """

    attempts: int = attrs.field(default=4, validator=at_least_one)
    base_delay: float = attrs.field(default=2.0, validator=non_negative)
    max_delay: float = attrs.field(default=30.0, validator=non_negative)
    reopen: bool = True
    max_sessions: int = attrs.field(default=3, validator=at_least_one)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(default=asyncio.sleep, eq=False, repr=False)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): ``base_delay * 2**(retry-1)``, capped."""
        return min(self.max_delay, self.base_delay * 2.0 ** min(retry - 1, 62))


async def send_retrying_unavailable(
    send: Callable[[], Awaitable[T]],
    policy: SessionUnavailablePolicy,
    *,
    given_up: Callable[[], bool],
    what: str,
) -> T:
    """Run ``send``; on 21184 wait and run it again, at most ``policy.attempts`` times in all.

    Args:
        send: One send of the invoice (it must encrypt and send afresh; a 21184 means nothing was accepted).
        policy: Attempts and waits.
        given_up: Tells whether the session was given up meanwhile (e.g. by another invoice): then no retry.
        what: Names the invoice and session in log records.

    Raises:
        SessionTemporarilyUnavailableError: The last attempt still got 21184, or the session was given up.
    """
    retry = 0
    while True:
        try:
            return await send()
        except SessionTemporarilyUnavailableError as exc:
            retry += 1
            if retry >= policy.attempts or given_up():
                raise
            last = exc
        delay = policy.delay(retry)
        logger.info(
            "session temporarily unavailable (21184) for %s: retry %d in %.1f s",
            what,
            retry,
            delay,
            extra=extras(what=what, retry=retry, delay=delay),
        )
        await policy.sleep(delay)
        if given_up():
            raise last
