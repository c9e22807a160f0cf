"""What only the Redis backend does: windows shared by processes, server time, keys and expiry, outages."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import ConfigurationError
from ksef_async.ratelimit_redis import RedisLimits

from ._redis import RedisServer, needs_redis

pytestmark = [pytest.mark.anyio, needs_redis]

ENV = "https://sim.test/v2"
SMALL = WindowLimits(2, 3, 5)


def store_for(server: RedisServer, namespace: str, **kwargs: Any) -> RedisLimits:
    return RedisLimits(server.url, namespace=namespace, **kwargs)


def up(store: RedisLimits) -> bool:
    return store.reachable


async def test_two_stores_share_one_context_window(redis_server: RedisServer, namespace: str) -> None:
    # Two stores with their own connections: what two processes (or machines) see.
    first, second = store_for(redis_server, namespace), store_for(redis_server, namespace)
    a, b = first.backend(ENV, "ctx:Nip:1"), second.backend(ENV, "ctx:Nip:1")
    now = first.clock.now()
    per_minute = WindowLimits(None, 2)
    assert await a.try_admit("g", per_minute, now) == now
    assert await b.try_admit("g", per_minute, now) == now
    refused = await b.try_admit("g", per_minute, now)
    assert 50 < refused - now <= 63.01  # the minute (63 s with the margin) of the first admission, less the time since
    assert await a.next_admission("g", per_minute, now) > now
    await first.backend(ENV, "ctx:Nip:1").pause("h", first.clock.now() + 30)
    assert await b.try_admit("h", SMALL, now) - now > 29
    await first.aclose()
    await second.aclose()


async def test_keys_are_namespaced_and_expire(redis_server: RedisServer, namespace: str) -> None:
    store = store_for(redis_server, namespace, egress="nat-1")
    limiter = store.limiter_for(ENV, "Nip:5265877635", {"invoiceSend": WindowLimits(10), "global": WindowLimits(75)})
    await limiter.acquire("invoiceSend")
    redis: Any = store.redis()
    keys = sorted(k.decode() for k in await redis.keys(f"{namespace}:*"))
    assert keys == [
        f"{namespace}:{{{ENV}|ctx:Nip:5265877635|invoiceSend}}:log",
        f"{namespace}:{{{ENV}|ctx:Nip:5265877635|invoiceSend}}:meta",
        f"{namespace}:{{{ENV}|ip:nat-1|global}}:log",
        f"{namespace}:{{{ENV}|ip:nat-1|global}}:meta",
    ]
    for key in keys:
        assert 0 < await redis.ttl(key) <= 4  # the 1.25 s window + 2 s
    await limiter.on_rate_limited("invoiceSend", 20.0)
    assert 18 <= await redis.ttl(keys[1]) <= 23  # the pause keeps its hash alive
    await asyncio.sleep(4.5)
    assert sorted(k.decode() for k in await redis.keys(f"{namespace}:*")) == [keys[1]]
    await store.aclose()


async def test_a_limiter_on_server_time_keeps_the_windows(redis_server: RedisServer, namespace: str) -> None:
    stores = [store_for(redis_server, namespace) for _ in range(3)]
    limits = {"g": WindowLimits(4, 100), "global": WindowLimits(75)}
    limiters = [s.limiter_for(ENV, "Nip:1", limits) for s in stores]
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire("g") for limiter in limiters for _ in range(4)))
    elapsed = time.monotonic() - start
    # 12 admissions at 4 per 1.25 s: the third burst starts 2.5 s after the first.
    assert 2.4 < elapsed < 6.0  # the upper bound only catches waits far past the windows (loaded CI)
    redis: Any = stores[0].redis()
    scores = [s for _, s in await redis.zrange(f"{namespace}:{{{ENV}|ctx:Nip:1|g}}:log", 0, -1, withscores=True)]
    assert len(scores) == 12
    server_now = float((await redis.time())[0])
    assert all(abs(s - server_now) < 10 for s in scores)  # Redis' TIME scale
    for i in range(len(scores) - 4):
        assert scores[i + 4] - scores[i] >= 1.25 - 1e-6  # no 1.25 s window holds more than 4
    assert abs(stores[0].clock.now() - (server_now + (await redis.time())[1] / 1e6)) < 1.0
    for s in stores:
        await s.aclose()


def test_configuration_errors_name_the_field(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigurationError, match="fallback_share"):
        RedisLimits(redis_server.url, fallback_share=0)
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisLimits("http://localhost:6379")
    with pytest.raises(ConfigurationError, match="egress"):
        RedisLimits(redis_server.url, egress="a|b")
    store = RedisLimits.from_url("redis://:secret@127.0.0.1:1/0?egress=nat-2&fallback_share=0.5&namespace=x")
    assert (store.egress, store.fallback_share, store.namespace) == ("nat-2", 0.5, "x")
    assert "secret" not in repr(store)


async def test_an_outage_falls_back_to_the_local_share_and_recovers(
    own_redis_server: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_for(own_redis_server, namespace, fallback_share=0.5, retry_interval=0.2)
    limits = {"g": WindowLimits(4, 1000), "global": WindowLimits(75)}
    limiter = store.limiter_for(ENV, "Nip:1", limits)
    caplog.set_level(logging.INFO, logger="ksef_async.ratelimit.redis")
    for _ in range(4):
        await limiter.acquire("g")
    own_redis_server.stop()
    await asyncio.sleep(1.3)
    start = time.monotonic()
    for _ in range(6):  # the share: 2 per 1.25 s
        await limiter.acquire("g")
    elapsed = time.monotonic() - start
    assert not up(store)
    assert 2.4 < elapsed < 6.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()
    own_redis_server.start()
    await asyncio.sleep(0.3)
    await limiter.acquire("g")  # probes, reaches Redis, writes the outage's admissions into the shared log
    assert up(store)
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    log_key = f"{namespace}:{{{ENV}|ctx:Nip:1|g}}:log"
    redis: Any = store.redis()
    assert await redis.zcard(log_key) == 7  # 6 from the outage + this one (the server lost the first 4)
    await store.aclose()
