"""Fixtures of the hostile-server tests: a simulator, the hostile proxy in front of it, a client of the proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN, ksef_simulator_factory
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.transport import RetryPolicy

from .server import HostileServer

__all__ = ["NIP", "TOKEN", "ksef_simulator_factory"]

NIP = DEFAULT_NIP
TOKEN = DEFAULT_TOKEN
GENEROUS = WindowLimits(1_000, 100_000, 1_000_000)


@pytest.fixture
async def sim(ksef_simulator_factory: Any) -> KsefSimulator:
    """A strict simulator with generous limits, permanent storage 10 minutes after acceptance."""
    simulator: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=5, storage_delay=600.0)
    simulator.rate_limiter.set_limits(dict.fromkeys(RATE_LIMIT_GROUPS, GENEROUS))
    return simulator


@pytest.fixture
async def hostile(sim: KsefSimulator) -> AsyncIterator[HostileServer]:
    """The hostile proxy in front of ``sim`` (no tricks until a test adds them)."""
    server = await HostileServer(sim).start()
    yield server
    await server.stop()


def fast_config(**kwargs: Any) -> ClientConfig:
    """No retries of 5xx/timeouts (a test sees the first failure), short timeouts."""
    kwargs.setdefault("retry", RetryPolicy(attempts=1, wait_initial=0.0, wait_jitter=0.0, max_rate_limit_retries=3))
    return ClientConfig(**kwargs)


@pytest.fixture
async def client(hostile: HostileServer) -> AsyncIterator[KsefClient]:
    """A logged-in-on-demand client of the hostile proxy, with a limiter of its own."""
    limiter = RateLimiter(RATE_LIMIT_GROUPS)
    async with KsefClient(
        hostile.base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, limiter=limiter, config=fast_config()
    ) as c:
        yield c
