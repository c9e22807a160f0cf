"""A malicious KSeF server for tests: a reverse proxy in front of the simulator that misbehaves on chosen routes.

Every request goes to the simulator (so logins, sessions and exports work) unless a *trick* claims its method and
path. The tricks are what hostile servers do: endless pages, a repeated ``continuationToken``, ``Retry-After`` of
1e300 s, bodies trickled one byte at a time, bodies of any size, error bodies echoing the caller's bearer token,
and storage URLs serving arbitrary bytes (archive bombs, parts that never end). Planting hostile names in the
simulator's own data (`plant_ksef_number`) makes its real export packages carry them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from ksef_async.testing.simulator import KsefSimulator

__all__ = [
    "HostileServer",
    "Trick",
    "big_json",
    "echo_bearer",
    "endless_bytes",
    "endless_has_more",
    "endless_token",
    "plant_ksef_number",
    "retry_after",
    "serve_bytes",
    "trickle",
]

Trick = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HOP = {"host", "content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}


class HostileServer:
    """An aiohttp app on a loopback port; ``base_url`` is the API base a client is pointed at.

    Args:
        upstream: The simulator whose API is proxied for every route no trick claims (None: 404 for those).
    """

    def __init__(self, upstream: KsefSimulator | None = None) -> None:
        self.upstream = upstream
        self.tricks: list[tuple[str, re.Pattern[str], Trick]] = []
        self.hits: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL (``/v2``, like the simulator's)."""
        return self.root + "/v2"

    def on(self, method: str, path_regex: str, trick: Trick) -> None:
        """Answer ``method`` requests whose path matches ``path_regex`` (searched) with ``trick``."""
        self.tricks.append((method.upper(), re.compile(path_regex), trick))

    async def start(self) -> HostileServer:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        for method, pattern, trick in self.tricks:
            if method in (request.method, "*") and pattern.search(request.path):
                self.hits[pattern.pattern] = self.hits.get(pattern.pattern, 0) + 1
                return await trick(request)
        if self.upstream is None:
            return web.Response(status=404)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        assert self.upstream is not None
        upstream_root = "/".join(self.upstream.base_url.split("/", 3)[:3])
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method, upstream_root + request.path_qs, headers=headers, data=await request.read()
        ) as response:
            body = await response.read()
            out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP}
            return web.Response(status=response.status, body=body, headers=out)


# -- tricks -------------------------------------------------------------------------------------------------------


def endless_token(items_key: str, item: dict[str, Any] | None = None) -> Trick:
    """A list page that always carries the same ``continuationToken``."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.json_response({items_key: [item] if item else [], "continuationToken": "same-token-again"})

    return handler


def endless_has_more(body: dict[str, Any]) -> Trick:
    """A paged answer that always says ``hasMore``: ``body`` plus ``hasMore: true``."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.json_response({**body, "hasMore": True})

    return handler


def retry_after(value: str) -> Trick:
    """429 with ``Retry-After: value`` (e.g. ``1e300``), every time."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        body = {"status": {"code": 429, "description": "Too Many Requests", "details": ["slow down"]}}
        return web.json_response(body, status=429, headers={"Retry-After": value})

    return handler


def trickle(interval: float, total: int = 10_000) -> Trick:
    """200 whose JSON body arrives one byte every ``interval`` seconds (never finishing in a test's lifetime)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for _ in range(total):
                await response.write(b" ")
                await asyncio.sleep(interval)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    return handler


def big_json(size: int, *, status: int = 200, announce: bool = False) -> Trick:
    """A ``size``-byte body streamed in 1 MiB chunks, without ``Content-Length`` unless ``announce``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"}
        if announce:
            headers["Content-Length"] = str(size)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        sent = 0
        chunk = b" " * (1 << 20)
        try:
            while sent < size:
                piece = chunk[: size - sent]
                await response.write(piece)
                sent += len(piece)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    return handler


def echo_bearer(status: int = 400) -> Trick:
    """A non-JSON error body that echoes the caller's ``Authorization`` header (a badly written proxy)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        text = f"Request rejected. Received headers: Authorization: {request.headers.get('Authorization', '')}"
        return web.Response(status=status, text=text, content_type="text/plain")

    return handler


def serve_bytes(data: bytes) -> Trick:
    """200 with ``data`` (a storage URL serving an export part of our making)."""

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, content_type="application/octet-stream")

    return handler


def endless_bytes(counter: list[int]) -> Trick:
    """200 streaming 64 KiB chunks for ever (a part that never ends); ``counter[0]`` counts the bytes sent."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        chunk = b"\0" * 65536
        try:
            while True:
                await response.write(chunk)
                counter[0] += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    return handler


def plant_ksef_number(sim: KsefSimulator, hostile: str) -> str:
    """Rename one stored invoice of ``sim`` to ``hostile``: its export packages then carry that name."""
    number, invoice = next(iter(sim.state.invoices.items()))
    del sim.state.invoices[number]
    invoice.ksef_number = hostile
    sim.state.invoices[hostile] = invoice
    return number
