"""Fixtures of the retrieval tests: a simulator with generous custom rate limits and a logged-in client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import KsefClient
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN, ksef_simulator_factory
from ksef_async.testing.simulator import KsefSimulator

__all__ = ["GENEROUS", "NIP", "TOKEN", "ksef_simulator_factory"]

NIP = DEFAULT_NIP
TOKEN = DEFAULT_TOKEN


GENEROUS = WindowLimits(1_000, 100_000, 1_000_000)
"""Custom limits for tests that make many calls (the production 20/h would make them wait for hours)."""


@pytest.fixture
async def sim(ksef_simulator_factory: Any) -> KsefSimulator:
    """Strict contract mode, generous custom rate limits (reported by GET /rate-limits, which the client reads),
    permanent storage 10 minutes after acceptance."""
    simulator: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=11, storage_delay=600.0)
    simulator.rate_limiter.set_limits(dict.fromkeys(RATE_LIMIT_GROUPS, GENEROUS))
    return simulator


@pytest.fixture
async def client(sim: KsefSimulator) -> AsyncIterator[KsefClient]:
    # A limiter of its own: the process-wide one of (base URL, context) would outlive this simulator's port.
    limiter = RateLimiter(RATE_LIMIT_GROUPS)
    async with KsefClient(sim.base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, limiter=limiter) as c:
        yield c
