"""Failure handling against the simulator: 429 with Retry-After, 5xx retry of a GET, no blind retry of a POST."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import AmbiguousRequestError
from ksef_async.models import FormCode
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.transport import RetryPolicy

pytestmark = pytest.mark.anyio

FA3 = FormCode(system_code="FA (3)", schema_version="1-0E", value="FA")
CONFIG = ClientConfig(
    auth_poll_backoff=Backoff(initial=0.01, maximum=0.05),
    retry=RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05, wait_jitter=0.0, max_rate_limit_retries=4),
    sync_rate_limits=False,
)


async def test_429_pauses_for_retry_after_and_every_call_succeeds(ksef_simulator_factory: Any, counter: Any) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)])
    # The client believes the spec's limits; the server allows only 2 status calls per second.
    sim.rate_limiter.set_limits({"sessionMisc": WindowLimits(2, 100, 1000)})
    async with KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=CONFIG,
        limiter=RateLimiter(RATE_LIMIT_GROUPS),
        trace_configs=[counter.trace],
    ) as client:
        session = await client.online.open(FA3)
        started = time.monotonic()
        statuses = await asyncio.gather(*(client.sessions.status(session.reference_number) for _ in range(6)))
        elapsed = time.monotonic() - started
        await client.online.close(session.reference_number)
    assert all(s.status.code == 100 for s in statuses)
    assert sim.counters.rate_limited >= 1
    sent = counter[f"GET /sessions/{session.reference_number}"]
    assert sent == 6 + sim.counters.rate_limited  # each refused call was sent again, once per 429
    assert elapsed >= 1.0  # Retry-After: 1 was honoured before the retries


async def test_get_is_retried_after_5xx(ksef_simulator_factory: Any, counter: Any) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], faults="api-error=1:2")
    async with KsefClient(sim.base_url, config=CONFIG, trace_configs=[counter.trace]) as client:
        certificates = await client.security.public_key_certificates()
    assert len(certificates) == 2
    assert sim.counters.faults["api-error"] == 2
    assert counter["GET /security/public-key-certificates"] == 3


async def test_a_close_answered_500_is_ambiguous_and_not_repeated(ksef_simulator_factory: Any, counter: Any) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], faults="close-error=1:1")
    async with KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=CONFIG,
        trace_configs=[counter.trace],
    ) as client:
        session = await client.online.open(FA3)
        with pytest.raises(AmbiguousRequestError, match="may have taken effect"):
            await client.online.close(session.reference_number)
        status = await client.sessions.status(session.reference_number)
    assert counter[f"POST /sessions/online/{session.reference_number}/close"] == 1
    assert status.status.code != 100  # the close did take effect: checking the state was the right move
