"""Async client of the KSeF status service ("Latarnia"): current state and announcements, cached, never raising.

Base URL, in this order: the ``base_url`` argument, the environment variable ``KSEF_ASYNC_STATUS_URL``, the
environment's public address (``test`` and ``demo``: the TEST Latarnia, a stub that reports a fixed, stale
``TOTAL_FAILURE``; ``prod``: the production one). No authentication. Anything that is not a readable 200 answer
(connection error, timeout, 5xx, a non-JSON body) gives `ServiceState.UNKNOWN` with the reason: an unreachable
Latarnia says nothing about KSeF. Answers are cached for ``cache_ttl`` seconds, so callers may ask often.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self

import aiohttp

from ksef_async._logging import extras, get_logger
from ksef_async.core.status_service import Message, ServiceStatus, parse_messages, parse_status
from ksef_async.errors import ConfigurationError

__all__ = ["PROD_STATUS_URL", "STATUS_URL_ENV", "TEST_STATUS_URL", "StatusServiceClient", "status_url_for"]

TEST_STATUS_URL: Final = "https://api-latarnia-test.ksef.mf.gov.pl"
"""The TEST Latarnia (also used for DEMO, which has none). A stub: not a live signal."""
PROD_STATUS_URL: Final = "https://api-latarnia.ksef.mf.gov.pl"
"""The production Latarnia."""
STATUS_URL_ENV: Final = "KSEF_ASYNC_STATUS_URL"
"""Environment variable overriding the base URL."""
_MAX_BODY: Final = 1024 * 1024
_OK: Final = 200

logger = get_logger("status_service")


def status_url_for(environment: str | None = None, base_url: str | None = None) -> str:
    """The Latarnia base URL: ``base_url``, else ``$KSEF_ASYNC_STATUS_URL``, else by environment (default prod).

    Args:
        environment: ``test``, ``demo`` (-> TEST Latarnia) or ``prod``/``prd``.
        base_url: An explicit base URL (e.g. a simulator's ``sim.status_url``).

    Raises:
        ConfigurationError: An unknown environment or a URL that is not http(s).
    """
    url = base_url or os.environ.get(STATUS_URL_ENV) or None
    if url is None:
        name = (environment or "prod").lower()
        if name in {"test", "demo"}:
            url = TEST_STATUS_URL
        elif name in {"prod", "prd", "production"}:
            url = PROD_STATUS_URL
        else:
            raise ConfigurationError(f"status service: environment {environment!r} is not test, demo or prod")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"status service: base URL {url!r} must start with http:// or https://")
    return url.rstrip("/")


class StatusServiceClient:
    """Ask Latarnia: ``async with StatusServiceClient(environment="prod") as status: await status.status()``.

    Args:
        base_url: The service's base URL (see `status_url_for`).
        environment: Used when neither ``base_url`` nor the environment variable is set.
        timeout: Seconds for one request, connection included (default 10).
        cache_ttl: Seconds an answer is reused (default 30; 0 disables the cache).
        session: An aiohttp session to use (not closed here); by default the client opens its own.
        monotonic: Clock of the cache.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        environment: str | None = None,
        timeout: float = 10.0,
        cache_ttl: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not timeout > 0 or cache_ttl < 0:
            raise ConfigurationError("status service: timeout must be > 0 and cache_ttl >= 0")
        self.base_url = status_url_for(environment, base_url)
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self._session = session
        self._own_session = session is None
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, tuple[bool, Any]]] = {}
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"StatusServiceClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the aiohttp session if this client opened it."""
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def forget(self) -> None:
        """Drop cached answers (the next call asks the service)."""
        self._cache.clear()

    async def status(self) -> ServiceStatus:
        """``GET /status``: the state and its messages; `ServiceState.UNKNOWN` with a reason on any failure."""
        ok, payload = await self._get("/status")
        return parse_status(payload) if ok else ServiceStatus.unknown(str(payload))

    async def messages(self) -> tuple[Message, ...] | None:
        """``GET /messages``: the published announcements; ``None`` when the service could not be read."""
        ok, payload = await self._get("/messages")
        if not ok:
            return None
        if not isinstance(payload, list):
            logger.warning("status service: /messages is not a list", extra=extras(url=self.base_url))
            return None
        return parse_messages(payload)

    async def _get(self, path: str) -> tuple[bool, Any]:
        async with self._lock:  # concurrent callers share one request
            cached = self._cache.get(path)
            now = self._monotonic()
            if cached is not None and now - cached[0] < self.cache_ttl:
                return cached[1]
            result = await self._fetch(path)
            self._cache[path] = (self._monotonic(), result)
            return result

    async def _fetch(self, path: str) -> tuple[bool, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        url = self.base_url + path
        try:
            async with self._session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                if response.status != _OK:
                    return False, f"HTTP {response.status} from the status service"
                body = await response.content.read(_MAX_BODY + 1)
        except TimeoutError:
            return False, f"no answer within {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            return False, f"unreachable: {type(exc).__name__}"
        if len(body) > _MAX_BODY:
            return False, "the answer is larger than 1 MiB"
        try:
            return True, json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return False, "the answer is not JSON"
