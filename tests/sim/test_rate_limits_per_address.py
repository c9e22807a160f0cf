"""The simulator counts a context's groups per (context, client address), across connections, as KSeF does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import RateLimitedError
from ksef_async.operations import API_RATE_LIMITS, operation
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator.ratelimits import RateLimiter as SimLimiter
from ksef_async.transport import RetryPolicy

NO_429_RETRY = ClientConfig(
    auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), retry=RetryPolicy(max_rate_limit_retries=0)
)


def test_one_context_has_one_counter_per_address() -> None:
    lim = SimLimiter(overrides={"sessionList": WindowLimits(1, 10, 10)})
    sessions = operation("get_sessions")
    assert lim.admit_request(sessions, "Nip:1", 0.0, ip="10.0.0.1") is None
    refusal = lim.admit_request(sessions, "Nip:1", 0.1, ip="10.0.0.1")  # same address, any connection
    assert refusal is not None
    assert refusal.group == "sessionList"
    assert lim.admit_request(sessions, "Nip:1", 0.2, ip="10.0.0.2") is None  # another address: its own counter
    assert lim.admit_request(sessions, "Nip:2", 0.3, ip="10.0.0.1") is None  # another context: its own counter
    refusal = lim.admit_request(sessions, "Nip:1", 0.4, ip="10.0.0.2")
    assert refusal is not None
    assert (refusal.group, round(refusal.wait, 6)) == ("sessionList", 0.8)


@pytest.mark.anyio
async def test_two_processes_of_one_context_overrun_it_together(ksef_simulator_factory: Any) -> None:
    # Two clients with a limiter each (what two processes without a shared store have) and two connection pools:
    # each stays within 3/s for the context's group, together they do not, and the simulator refuses.
    sim = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], rate_limit_overrides={"other": WindowLimits(3, 100, 1000)}, seed=8
    )
    own = dict(API_RATE_LIMITS) | {"other": WindowLimits(3, 100, 1000)}
    clients = [
        KsefClient(
            sim.base_url,
            credentials=KsefTokenCredentials(DEFAULT_TOKEN),
            context=DEFAULT_NIP,
            config=NO_429_RETRY,
            limiter=RateLimiter(own),
        )
        for _ in range(2)
    ]

    async def work(client: KsefClient) -> None:
        for _ in range(3):
            await client.limits.context()

    async with clients[0], clients[1]:
        await asyncio.gather(*(client.login() for client in clients))
        await asyncio.sleep(1.1)  # the logins' GET /rate-limits leave the 1 s window
        outcomes = await asyncio.gather(*(work(client) for client in clients), return_exceptions=True)
    assert sim.counters.rate_limited >= 1
    assert any(isinstance(outcome, RateLimitedError) for outcome in outcomes)
