"""`ClientPool`: clients of many KSeF contexts in one process over one HTTP connection pool and one per-IP limiter.

::

    async with ClientPool(Environment.PROD, credentials=credentials_from_env()) as pool:
        report = await send_contexts(pool, {"1234567890": paths_a, "5265877635": paths_b})

- **One connection pool.** Every client of the pool uses the pool's one (API, storage) pair of aiohttp sessions;
  ``ClientConfig.api_connections`` is then the limit for all contexts together.
- **Limits.** Each context has its own limiter (its groups are counted per context) and all share the per-IP
  limiter of the environment (``global``, ``anonymous``), in memory or in the store ``rate_limits`` names
  (`ksef_async.ratelimit_config`), so the contexts together never overrun the address's ``global`` window.
- **Lazy logins.** A context's credentials are asked for (from a mapping or a callback, which may be async and may
  read a secrets manager) only when its client is first needed, and the login happens on its first call; each
  client refreshes its own tokens. Nothing is written to disk; credentials never appear in a repr.
- **Clean close.** Closing the pool closes every client, then the shared sessions.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import attrs

from ksef_async.auth import Credentials, KsefTokenCredentials
from ksef_async.client import ClientConfig, Environment, KsefClient, open_http_sessions
from ksef_async.errors import ConfigurationError
from ksef_async.online import OnlineSendResult, send_online
from ksef_async.ratelimit_config import RateLimitsSetting

__all__ = [
    "ClientPool",
    "ContextProgress",
    "CredentialsProvider",
    "MultiContextReport",
    "credentials_from_env",
    "send_contexts",
]

CredentialsProvider = Callable[[str], "Credentials | Awaitable[Credentials]"]
"""Called with a context (a NIP) the first time the pool needs its client; returns (or awaits) its credentials."""


def credentials_from_env(prefix: str = "KSEF_TOKEN_", environ: Mapping[str, str] | None = None) -> CredentialsProvider:
    """Return a provider reading each context's KSeF token from ``<prefix><NIP>`` (e.g. ``KSEF_TOKEN_5265877635``).

    Raises (when called):
        ConfigurationError: The variable is not set (its name is given, never a value).
    """
    source = os.environ if environ is None else environ

    def provide(context: str) -> Credentials:
        token = source.get(f"{prefix}{context}")
        if not token:
            raise ConfigurationError(f"no KSeF token for context {context}: set {prefix}{context}")
        return KsefTokenCredentials(token)

    return provide


class ClientPool:
    """Lazily opened `KsefClient` objects, one per context, sharing HTTP sessions and the per-IP limiter.

    Args:
        environment_or_base_url: An `Environment` or any API base URL.
        credentials: Context (NIP) -> credentials, or a `CredentialsProvider`.
        config: Tunables of every client (and of the shared sessions).
        rate_limits: Where the limits live (see `ksef_async.ratelimit_config`); None: ``KSEF_ASYNC_LIMITS_URL`` or
            this process.
        trace_configs: aiohttp trace configs of the shared sessions.
    """

    def __init__(
        self,
        environment_or_base_url: Environment | str,
        *,
        credentials: Mapping[str, Credentials] | CredentialsProvider,
        config: ClientConfig | None = None,
        rate_limits: RateLimitsSetting = None,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self._target = environment_or_base_url
        self._credentials = credentials
        self.config = config or ClientConfig()
        self._rate_limits = rate_limits
        self._trace_configs = trace_configs
        self._sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession] | None = None
        self._clients: dict[str, KsefClient] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"ClientPool(target={self._target!r}, contexts={sorted(self._clients)!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def contexts(self) -> list[str]:
        """The contexts whose clients are open, in the order they were opened."""
        return list(self._clients)

    async def open(self) -> None:
        """Create the shared HTTP sessions (done by ``async with``)."""
        if self._sessions is not None:
            return
        self._sessions = open_http_sessions(self.config, self._trace_configs)

    async def client(self, context: str) -> KsefClient:
        """Return the open client of ``context`` (a NIP), creating it on first use (credentials asked for then).

        Raises:
            ConfigurationError: The pool is not open, or the context has no credentials.
        """
        client = self._clients.get(context)
        if client is not None:
            return client
        if self._sessions is None:
            raise ConfigurationError("the pool is not open: use 'async with ClientPool(...)'")
        lock = self._opening.setdefault(context, asyncio.Lock())
        async with lock:
            client = self._clients.get(context)
            if client is not None:
                return client
            credentials = await self._credentials_of(context)
            client = KsefClient(
                self._target,
                credentials=credentials,
                context=context,
                config=self.config,
                rate_limits=self._rate_limits,
                http_sessions=self._sessions,
            )
            await client.open()
            self._clients[context] = client
            return client

    async def _credentials_of(self, context: str) -> Credentials:
        source = self._credentials
        if isinstance(source, Mapping):
            found = source.get(context)
            if found is None:
                raise ConfigurationError(f"no credentials for context {context}")
            return found
        value = source(context)
        return await value if inspect.isawaitable(value) else value

    async def aclose(self) -> None:
        """Close every client, then the shared sessions (done by ``async with``); tokens are not revoked."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._sessions is not None:
            for session in self._sessions:
                await session.close()
            self._sessions = None


@attrs.frozen
class ContextProgress:
    """One line of progress: a context started, finished or failed (``accepted``/``total`` when finished)."""

    context: str
    event: str
    accepted: int = 0
    total: int = 0
    error: str | None = None


@attrs.frozen
class MultiContextReport:
    """The results of `send_contexts`: one `OnlineSendResult` per context that ran, one error per context that failed.

    Attributes:
        results: Context -> its result.
        errors: Context -> why it could not be sent (login refused, unreadable input ...).
        seconds: Wall-clock duration of the whole run.
    """

    results: dict[str, OnlineSendResult]
    errors: dict[str, str]
    seconds: float

    @property
    def all_accepted(self) -> bool:
        """Whether every context ran and every invoice of every context was accepted."""
        return not self.errors and all(result.all_accepted for result in self.results.values())

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict: totals, then per context its result or its error."""
        return {
            "contexts": len(self.results) + len(self.errors),
            "accepted": sum(len(r.accepted) for r in self.results.values()),
            "rejected": sum(len(r.rejected) for r in self.results.values()),
            "failed_contexts": sorted(self.errors),
            "seconds": round(self.seconds, 3),
            "by_context": {
                **{context: result.to_json() for context, result in self.results.items()},
                **{context: {"error": error} for context, error in self.errors.items()},
            },
        }


async def send_contexts(
    pool: ClientPool,
    jobs: Mapping[str, Iterable[tuple[str, bytes] | Path]],
    *,
    concurrency_per_context: int = 4,
    on_progress: Callable[[ContextProgress], None] | None = None,
    **send_options: Any,
) -> MultiContextReport:
    """Send each context's invoices through `ksef_async.online.send_online`, all contexts at once, under the limits.

    A context that fails (its login refused, its input unreadable) is reported in ``errors`` and does not stop the
    others.

    Args:
        pool: An open pool.
        jobs: Context (NIP) -> its invoices (``(name, bytes)`` pairs or paths).
        concurrency_per_context: Invoices in flight at once per context.
        on_progress: Called (on the loop, must not block) when a context starts, finishes or fails.
        send_options: Further keyword arguments of `send_online`.
    """
    started = time.monotonic()
    results: dict[str, OnlineSendResult] = {}
    errors: dict[str, str] = {}

    def tell(progress: ContextProgress) -> None:
        if on_progress is not None:
            on_progress(progress)

    async def one(context: str, invoices: Iterable[tuple[str, bytes] | Path]) -> None:
        items = list(invoices)
        tell(ContextProgress(context, "started", total=len(items)))
        try:
            client = await pool.client(context)
            result = await send_online(client, items, concurrency=concurrency_per_context, **send_options)
        except Exception as exc:  # noqa: BLE001 - one context's failure is reported, the others go on
            errors[context] = f"{type(exc).__name__}: {exc}"
            tell(ContextProgress(context, "failed", total=len(items), error=errors[context]))
            return
        results[context] = result
        tell(ContextProgress(context, "finished", accepted=len(result.accepted), total=len(items)))

    await asyncio.gather(*(one(context, invoices) for context, invoices in jobs.items()))
    ordered = {context: results[context] for context in jobs if context in results}
    return MultiContextReport(results=ordered, errors=errors, seconds=time.monotonic() - started)
