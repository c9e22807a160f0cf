"""Which limiter a client gets: the process-wide memory one, a shared store from a URL, or an object the user gives.

``KsefClient(..., rate_limits=...)``, the ``KSEF_ASYNC_LIMITS_URL`` environment variable and the CLI's
``--limits-url`` all end here:

- ``None`` (and no ``KSEF_ASYNC_LIMITS_URL``), or ``"memory://"``: the process-wide in-memory limiter
  (`ksef_async.ratelimit.limiter_for`), as before;
- ``"redis://..."``, ``"rediss://..."`` or ``"unix://..."``: a `ksef_async.ratelimit_redis.RedisLimits` store (the
  ``[redis]`` extra), one per URL per process, so every client of the process shares its limiters too; the URL's
  query may set ``namespace``, ``egress``, ``fallback_share`` and ``margin``;
- a store object with ``limiter_for(environment, context_key, limits)`` (e.g. a `RedisLimits` built in code);
- a `ksef_async.ratelimit.Backend`: a limiter of this client alone over that backend, holding every group
  (``global`` included) in it.

The Redis module is imported only when a Redis URL or store is used: ``import ksef_async`` never needs redis.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import ConfigurationError
from ksef_async.ratelimit import Backend, RateLimiter, limiter_for

__all__ = ["LIMITS_URL_ENV", "LimitStore", "RateLimitsSetting", "resolve_limiter", "store_for_url"]

LIMITS_URL_ENV = "KSEF_ASYNC_LIMITS_URL"
"""Environment variable naming the limits store when a client is given none (e.g. ``redis://redis:6379/0``)."""


@runtime_checkable
class LimitStore(Protocol):
    """A place that hands out limiters per (environment, context), e.g. `ksef_async.ratelimit_redis.RedisLimits`."""

    def limiter_for(self, environment: str, context_key: str, limits: Mapping[str, WindowLimits]) -> RateLimiter:
        """Return the limiter of one (environment, context)."""
        ...


RateLimitsSetting = LimitStore | Backend | str | None
"""What ``KsefClient(rate_limits=...)`` accepts (see the module docstring)."""

_stores: dict[str, LimitStore] = {}
_stores_lock = threading.Lock()


def store_for_url(url: str) -> LimitStore | None:
    """Return the process-wide store of a limits URL (None for ``memory://``, the in-process limiter).

    Raises:
        ConfigurationError: An unknown scheme, a malformed Redis URL, or the ``[redis]`` extra is missing.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return None
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"rate_limits: a limits URL must start with redis://, rediss://, unix:// or memory://, got {scheme!r}"
        )
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            from ksef_async.ratelimit_redis import RedisLimits  # noqa: PLC0415 - optional dependency

            store = _stores[url] = RedisLimits.from_url(url)
        return store


def resolve_limiter(
    setting: RateLimitsSetting | Any,
    environment: str,
    context_key: str,
    limits: Mapping[str, WindowLimits],
) -> RateLimiter:
    """Return the limiter a client of (``environment``, ``context_key``) uses for ``setting``.

    Raises:
        ConfigurationError: ``setting`` is none of the accepted kinds, or its URL is unusable.
    """
    if setting is None:
        setting = os.environ.get(LIMITS_URL_ENV) or None
    if setting is None:
        return limiter_for(environment, context_key, limits)
    if isinstance(setting, str):
        store = store_for_url(setting)
        if store is None:
            return limiter_for(environment, context_key, limits)
        return store.limiter_for(environment, context_key, limits)
    if isinstance(setting, LimitStore):
        return setting.limiter_for(environment, context_key, limits)
    if all(
        callable(getattr(setting, name, None)) for name in ("try_admit", "next_admission", "pause", "settle", "release")
    ):
        return RateLimiter(limits, backend=setting)
    raise ConfigurationError(
        f"rate_limits must be a limits URL, a store with limiter_for() or a rate-limit Backend, got {type(setting)!r}"
    )
