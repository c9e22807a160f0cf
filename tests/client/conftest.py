"""Fixtures of the client tests: a simulator per test (strict contract mode) and a request counter for clients."""

from __future__ import annotations

import collections
from typing import Any

import aiohttp
import pytest

from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN, ksef_simulator_factory
from ksef_async.testing.simulator import KsefSimulator

__all__ = ["RequestCounter", "ksef_simulator_factory"]


class RequestCounter:
    """Counts the requests a client really sends, by ``METHOD /path`` (path below the API base)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._on_start)

    async def _on_start(self, _session: Any, _ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        path = params.url.path
        self.counts[f"{params.method} {path.split('/v2', 1)[-1]}"] += 1

    def __getitem__(self, key: str) -> int:
        return self.counts[key]


@pytest.fixture
async def sim(ksef_simulator_factory: Any) -> KsefSimulator:
    """A simulator with the default context, production rate limits, strict contract checks (stopped by the factory)."""
    simulator: KsefSimulator = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=7)
    return simulator


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()
