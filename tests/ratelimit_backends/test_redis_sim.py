"""Clients sharing limits through Redis against the simulator: no 429 across processes, and a Redis outage survived.

Two `RedisLimits` stores stand for two processes (each its own connections and local state); the simulator counts
invoiceSend per (context, client address) across all connections, as KSeF does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.online import send_online
from ksef_async.ratelimit_redis import RedisLimits
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN

from ._redis import RedisServer, needs_redis

pytestmark = [pytest.mark.anyio, needs_redis, pytest.mark.slow]

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))
SEND = WindowLimits(4, 1000, 10000)


async def _send(sim: Any, store: RedisLimits, seed: int, count: int) -> Any:
    invoices = list(InvoiceFactory(DEFAULT_NIP, seed=seed).iter(count))
    async with KsefClient(
        sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP, config=QUICK,
        rate_limits=store,
    ) as client:  # fmt: skip
        return await send_online(client, invoices)


async def test_redis_stopped_for_10_s_mid_run(
    ksef_simulator_factory: Any, own_redis_server: RedisServer, namespace: str
) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=5,
                                       rate_limit_overrides={"invoiceSend": SEND})  # fmt: skip
    stores = [RedisLimits(own_redis_server.url, namespace=namespace, fallback_share=0.5, retry_interval=0.5)
              for _ in range(2)]  # fmt: skip

    async def outage() -> None:
        await asyncio.sleep(4)
        own_redis_server.stop()
        await asyncio.sleep(10)
        own_redis_server.start()

    results = await asyncio.gather(_send(sim, stores[0], 1, 30), _send(sim, stores[1], 2, 30), outage())
    for result in results[:2]:
        assert result.all_accepted
        assert len(result.accepted) == 30
    assert sum(1 for inv in sim._state.invoices.values()) == 60  # none lost, none twice
    assert all(store.reachable for store in stores)
    assert [store.outages for store in stores] == [1, 1]  # the run really went through the outage
    # The policy's bound: a window straddling the outage's start may exceed by P * share * N = 2 * 0.5 * 4.
    assert sim.counters.rate_limited <= 4
    for store in stores:
        await store.aclose()
