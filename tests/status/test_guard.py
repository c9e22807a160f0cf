"""Unit tests of `ksef_async.outage.OutageGuard` over a scripted status source (one layer, no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from ksef_async.core.status_service import ServiceState, ServiceStatus, parse_messages
from ksef_async.errors import AmbiguousRequestError, BadRequestError, RateLimitedError, ServerError
from ksef_async.outage import OutageGuard, OutageNotice, OutagePolicy, guarded

pytestmark = pytest.mark.anyio

_START = {
    "id": "K/1",
    "eventId": 9,
    "category": "FAILURE",
    "type": "FAILURE_START",
    "start": "2025-07-09T08:00:00+00:00",
    "version": 1,
}
FAILURE = ServiceStatus(ServiceState.FAILURE, parse_messages([_START]))


class Script:
    """Answers ``states[i]`` on the i-th question, then the last one for ever."""

    def __init__(self, *states: ServiceStatus) -> None:
        self.states = list(states)
        self.asked = 0

    async def status(self) -> ServiceStatus:
        self.asked += 1
        return self.states[min(self.asked - 1, len(self.states) - 1)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def _guard(source: Script, clock: Clock, **policy: float) -> OutageGuard:
    return OutageGuard(source, OutagePolicy(**policy), sleep=clock.sleep, monotonic=clock.monotonic)


async def test_concurrent_failures_share_one_wait_and_all_retry() -> None:
    source = Script(FAILURE, FAILURE, ServiceStatus(ServiceState.AVAILABLE))
    clock = Clock()
    guard = _guard(source, clock, poll_interval=10, max_wait=100)
    attempts = {"a": 0, "b": 0}

    async def call(name: str) -> str:
        attempts[name] += 1
        if attempts[name] == 1:
            raise ServerError(503)
        return name

    results = await asyncio.gather(guard.call(lambda: call("a")), guard.call(lambda: call("b")))
    assert list(results) == ["a", "b"]
    assert attempts == {"a": 2, "b": 2}
    assert guard.waits == 1
    assert clock.now == 20  # two polls of 10 s
    (window,) = guard.windows
    assert (window.event_id, window.category, window.end) == (9, "FAILURE", None)


async def test_a_wait_that_gave_up_is_not_repeated_by_queued_callers() -> None:
    clock = Clock()
    guard = _guard(Script(FAILURE), clock, poll_interval=10, max_wait=25)
    notices: list[OutageNotice] = []
    guard.on_notice = notices.append

    async def fail() -> None:
        raise ServerError(503)

    outcomes = await asyncio.gather(guard.call(fail), guard.call(fail), guard.call(fail), return_exceptions=True)
    assert all(isinstance(o, ServerError) for o in outcomes)
    assert guard.waits == 1
    assert clock.now == 25
    assert notices[-1].gave_up
    assert notices[-1].message.endswith("stopped waiting after 25 s")


@pytest.mark.parametrize("state", [ServiceState.AVAILABLE, ServiceState.UNKNOWN])
async def test_no_outage_means_no_wait(state: ServiceState) -> None:
    clock = Clock()
    guard = _guard(Script(ServiceStatus(state)), clock)
    assert await guard.wait_if_announced(ServerError(502)) is False
    assert clock.now == 0


async def test_only_transient_errors_consult_the_service() -> None:
    source = Script(FAILURE)
    guard = _guard(source, Clock())
    assert await guard.wait_if_announced(RateLimitedError(429)) is False
    assert await guard.wait_if_announced(BadRequestError(400)) is False
    assert source.asked == 0


async def test_an_ambiguous_request_is_never_repeated() -> None:
    source = Script(FAILURE, ServiceStatus(ServiceState.AVAILABLE))
    guard = _guard(source, Clock(), poll_interval=5)
    calls = 0

    async def maybe_sent() -> None:
        nonlocal calls
        calls += 1
        raise AmbiguousRequestError("no answer")

    with pytest.raises(AmbiguousRequestError):
        await guard.call(maybe_sent)
    assert calls == 1
    assert guard.waits == 1


async def test_guarded_without_a_guard_just_calls() -> None:
    async def value() -> int:
        return 7

    assert await guarded(None, value) == 7


def test_policy_validation() -> None:
    with pytest.raises(Exception, match="max_wait"):
        OutagePolicy(max_wait=-1)
    with pytest.raises(Exception, match="poll_interval"):
        OutagePolicy(poll_interval=0)
