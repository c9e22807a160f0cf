"""How a client gets its limits store: ``rate_limits=`` (URL, store, backend), ``KSEF_ASYNC_LIMITS_URL``, the CLI."""

from __future__ import annotations

import pytest

from ksef_async.cli._connection import Connection
from ksef_async.client import KsefClient
from ksef_async.errors import ConfigurationError
from ksef_async.ratelimit import MemoryBackend, RateLimiter, limiter_for
from ksef_async.ratelimit_config import LIMITS_URL_ENV
from ksef_async.ratelimit_redis import RedisBackend, RedisLimits

from ._redis import RedisServer, needs_redis

NIP = "5265877635"
BASE = "http://127.0.0.1:9/v2"


def backend_of(limiter: RateLimiter) -> object:
    return limiter._backend


@needs_redis
def test_a_redis_url_gives_shared_limiters(redis_server: RedisServer, namespace: str) -> None:
    url = f"{redis_server.url}?namespace={namespace}&egress=nat-7"
    first = KsefClient(BASE, context=NIP, rate_limits=url)
    second = KsefClient(BASE, context=NIP, rate_limits=url)
    assert first.limiter is second.limiter  # one store per URL per process
    backend = backend_of(first.limiter)
    assert isinstance(backend, RedisBackend)
    assert backend.keys("invoiceSend")[0] == f"{namespace}:{{{BASE}|ctx:Nip:{NIP}|invoiceSend}}:log"
    assert first.limiter.per_ip is not None
    per_ip = backend_of(first.limiter.per_ip)
    assert isinstance(per_ip, RedisBackend)
    assert per_ip.keys("global")[0] == f"{namespace}:{{{BASE}|ip:nat-7|global}}:log"
    assert first.limiter is not limiter_for(BASE, f"Nip:{NIP}", {})


@needs_redis
def test_the_environment_variable_and_the_cli_option(
    redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{redis_server.url}?namespace={namespace}"
    monkeypatch.setenv(LIMITS_URL_ENV, url)
    assert isinstance(backend_of(KsefClient(BASE, context=NIP).limiter), RedisBackend)
    monkeypatch.delenv(LIMITS_URL_ENV)
    assert KsefClient(BASE, context=NIP).limiter is limiter_for(BASE, f"Nip:{NIP}", {})
    cli = Connection(base_url=BASE, nip=NIP, token="t", limits_url=url).client()
    assert isinstance(backend_of(cli.limiter), RedisBackend)


def test_memory_url_backend_object_and_errors() -> None:
    assert KsefClient(BASE, context=NIP, rate_limits="memory://").limiter is limiter_for(BASE, f"Nip:{NIP}", {})
    backend = MemoryBackend()
    own = KsefClient(BASE, context=NIP, rate_limits=backend)
    assert backend_of(own.limiter) is backend
    assert own.limiter.per_ip is None  # the given backend holds every group, global included
    with pytest.raises(ConfigurationError, match="redis://"):
        KsefClient(BASE, context=NIP, rate_limits="http://redis:6379")
    with pytest.raises(ConfigurationError, match="either limiter or rate_limits"):
        KsefClient(BASE, context=NIP, rate_limits="memory://", limiter=RateLimiter({}))
    with pytest.raises(ConfigurationError, match="rate_limits must be"):
        KsefClient(BASE, context=NIP, rate_limits=42)  # type: ignore[arg-type]


@needs_redis
def test_a_store_object(redis_server: RedisServer, namespace: str) -> None:
    store = RedisLimits(redis_server.url, namespace=namespace)
    client = KsefClient(BASE, context=NIP, rate_limits=store)
    assert client.limiter is store.limiter_for(BASE, f"Nip:{NIP}", {})
