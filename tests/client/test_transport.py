"""The transports against a small aiohttp server written here: retries, ambiguity, 429, 401, warnings, storage."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
import stamina
from aiohttp import web

from ksef_async.errors import (
    AmbiguousRequestError,
    IntegrityError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnauthorizedError,
)
from ksef_async.models import PartUploadRequest
from ksef_async.operations import RATE_LIMIT_GROUPS, operation
from ksef_async.ratelimit import RateLimiter
from ksef_async.resources.batch import BatchResource
from ksef_async.resources.security import SecurityResource
from ksef_async.transport import ApiTransport, KsefSystemWarning, RetryPolicy, StorageTransport

pytestmark = pytest.mark.anyio

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeClock:
    """The limiter's clock: sleeping advances fake time at once."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class Server:
    """One route per test, a request log, and a base URL."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.base_url = ""

    def log(self, request: web.Request, body: bytes) -> None:
        self.requests.append((request.method, request.path, dict(request.headers), body))


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[str, str, Handler], Awaitable[Server]]]:
    runners: list[web.AppRunner] = []

    async def start(method: str, path: str, handler: Handler) -> Server:
        server = Server()

        async def logged(request: web.Request) -> web.StreamResponse:
            server.log(request, await request.read())
            return await handler(request)

        app = web.Application()
        app.router.add_route(method, path, logged)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        server.base_url = f"http://127.0.0.1:{port}/v2"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


FAST = RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.002, wait_jitter=0.0, max_rate_limit_retries=2)
FAST_GIVE_UP = attrs.evolve(FAST, timeout=1.0)


def transport(base_url: str, session: aiohttp.ClientSession, clock: FakeClock | None = None) -> ApiTransport:
    return ApiTransport(base_url, session, RateLimiter(RATE_LIMIT_GROUPS, clock=clock or FakeClock()), FAST)


class FixedTokens:
    """A token source that hands out ``tokens`` in order, one more per 401."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.generation = 0
        self.unauthorized: list[int] = []

    async def access_token(self) -> tuple[str, int]:
        return self.tokens[min(self.generation, len(self.tokens) - 1)], self.generation

    async def on_unauthorized(self, generation: int) -> None:
        self.unauthorized.append(generation)
        self.generation += 1


STATUS_BODY = {
    "status": {"code": 200, "description": "ok"},
    "dateCreated": "2026-01-01T00:00:00+00:00",
    "dateUpdated": "2026-01-01T00:00:00+00:00",
}


async def test_get_is_retried_on_5xx_then_succeeds(serve: Any, http: aiohttp.ClientSession) -> None:
    answers = iter([503, 500, 200])

    async def handler(request: web.Request) -> web.Response:
        status = next(answers)
        return web.json_response(STATUS_BODY if status == 200 else {"title": "down"}, status=status)

    server = await serve("GET", "/v2/sessions/{ref}", handler)
    api = transport(server.base_url, http)
    api.tokens = FixedTokens("access")
    response = await api.request(operation("get_sessions_by_reference_number"), path_params={"referenceNumber": "R"})
    assert response.json()["status"]["code"] == 200
    assert len(server.requests) == 3


async def test_get_gives_up_after_the_configured_attempts(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"title": "down"}, status=503)

    server = await serve("GET", "/v2/security/public-key-certificates", handler)
    with pytest.raises(ServerError) as info:
        await transport(server.base_url, http).request(operation("get_security_public_key_certificates"))
    assert info.value.status == 503
    assert len(server.requests) == FAST.attempts


async def test_stamina_testing_mode_makes_retries_instant(serve: Any, http: aiohttp.ClientSession) -> None:
    answers = iter([502, 502, 502, 502, 200])

    async def handler(request: web.Request) -> web.Response:
        return web.json_response([], status=next(answers))

    server = await serve("GET", "/v2/security/public-key-certificates", handler)
    slow = RetryPolicy(attempts=5, wait_initial=30, wait_max=60)
    api = ApiTransport(server.base_url, http, RateLimiter(RATE_LIMIT_GROUPS, clock=FakeClock()), slow)
    stamina.set_testing(True, attempts=5)  # not as a context manager: that needs stamina 25.1, the floor is 24.3
    try:
        response = await asyncio.wait_for(api.request(operation("get_security_public_key_certificates")), 5)
    finally:
        stamina.set_testing(False)
    assert response.status == 200
    assert len(server.requests) == 5


async def test_post_that_may_have_taken_effect_is_not_retried_on_5xx(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"title": "oops"}, status=500)

    server = await serve("POST", "/v2/sessions/online/{ref}/invoices", handler)
    api = transport(server.base_url, http)
    api.tokens = FixedTokens("access")
    with pytest.raises(AmbiguousRequestError, match="may have taken effect") as info:
        await api.request(
            operation("post_sessions_online_invoices"), path_params={"referenceNumber": "R"}, json_body={"a": 1}
        )
    assert isinstance(info.value.__cause__, ServerError)
    assert len(server.requests) == 1


async def test_post_connection_lost_after_sending_is_ambiguous(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()  # the request arrived; the answer never comes
        await asyncio.sleep(0.05)
        return web.Response()

    server = await serve("POST", "/v2/sessions/online", handler)
    api = transport(server.base_url, http)
    api.tokens = FixedTokens("access")
    with pytest.raises(AmbiguousRequestError):
        await api.request(operation("post_sessions_online"), json_body={})
    assert len(server.requests) == 1


async def test_get_connection_lost_is_retried(serve: Any, http: aiohttp.ClientSession) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
        return web.json_response([])

    server = await serve("GET", "/v2/security/public-key-certificates", handler)
    response = await transport(server.base_url, http).request(operation("get_security_public_key_certificates"))
    assert response.json() == []
    assert len(server.requests) == 2


async def test_connection_refused_is_a_transport_error_even_for_a_post(http: aiohttp.ClientSession) -> None:
    # Refused connections are retried through the reachability probe until the policy's timeout: 1 s here, not 60.
    api = ApiTransport("http://127.0.0.1:9/v2", http, RateLimiter(RATE_LIMIT_GROUPS, clock=FakeClock()), FAST_GIVE_UP)
    with pytest.raises(TransportError, match="KSeF unreachable") as info:
        await api.request(operation("post_auth_challenge"))
    assert not isinstance(info.value, AmbiguousRequestError)


class _SlowFailingResolver(aiohttp.abc.AbstractResolver):
    """Fails every lookup, after ``delay`` seconds: a connection attempt that ends only after the call's deadline."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[Any]:
        await asyncio.sleep(self.delay)
        raise OSError(f"cannot resolve {host}")

    async def close(self) -> None:
        pass


async def test_a_connection_attempt_failing_after_the_deadline_gives_the_same_error() -> None:
    # Whether the deadline passes while the call waits for the probe or during its own failing attempt, the caller
    # gets one error: KSeF unreachable, nothing sent.
    policy = attrs.evolve(FAST, timeout=0.1)
    connector = aiohttp.TCPConnector(resolver=_SlowFailingResolver(0.3))
    async with aiohttp.ClientSession(connector=connector) as http:
        api = ApiTransport("http://ksef.invalid/v2", http, RateLimiter(RATE_LIMIT_GROUPS, clock=FakeClock()), policy)
        with pytest.raises(
            TransportError, match=r"post_auth_challenge: KSeF unreachable for 0\.\d s \(1 failed"
        ) as info:
            await api.request(operation("post_auth_challenge"))
    assert not isinstance(info.value, AmbiguousRequestError)
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)


async def test_429_pauses_the_group_for_retry_after_then_retries(serve: Any, http: aiohttp.ClientSession) -> None:
    answers = iter([429, 200])

    async def handler(request: web.Request) -> web.Response:
        status = next(answers)
        if status == 429:
            return web.json_response(
                {"title": "Too Many Requests", "status": 429}, status=429, headers={"Retry-After": "7"}
            )
        return web.json_response({"referenceNumber": "X", "validUntil": "2026-01-01T00:00:00Z"}, status=201)

    server = await serve("POST", "/v2/sessions/online", handler)
    clock = FakeClock()
    api = transport(server.base_url, http, clock)
    api.tokens = FixedTokens("access")
    response = await api.request(operation("post_sessions_online"), json_body={})
    assert response.status == 201
    assert len(server.requests) == 2
    assert clock.t >= 7.0  # the retry was admitted only after the pause KSeF asked for
    assert any(s >= 7.0 - 1e-6 for s in clock.sleeps)


async def test_429_retries_are_bounded(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"title": "Too Many Requests"}, status=429, headers={"Retry-After": "1"})

    server = await serve("GET", "/v2/security/public-key-certificates", handler)
    with pytest.raises(RateLimitedError) as info:
        await transport(server.base_url, http).request(operation("get_security_public_key_certificates"))
    assert info.value.retry_after == 1.0
    assert len(server.requests) == FAST.max_rate_limit_retries + 1


async def test_401_refreshes_once_and_retries(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.headers["Authorization"] == "Bearer new":
            return web.json_response(STATUS_BODY)
        return web.json_response({"title": "Unauthorized", "status": 401}, status=401)

    server = await serve("GET", "/v2/sessions/{ref}", handler)
    api = transport(server.base_url, http)
    tokens = api.tokens = FixedTokens("old", "new")
    await api.request(operation("get_sessions_by_reference_number"), path_params={"referenceNumber": "R"})
    assert tokens.unauthorized == [0]
    assert [r[2]["Authorization"] for r in server.requests] == ["Bearer old", "Bearer new"]


async def test_a_second_401_is_raised(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"title": "Unauthorized", "status": 401}, status=401)

    server = await serve("GET", "/v2/sessions/{ref}", handler)
    api = transport(server.base_url, http)
    tokens = api.tokens = FixedTokens("a", "b", "c")
    with pytest.raises(UnauthorizedError):
        await api.request(operation("get_sessions_by_reference_number"), path_params={"referenceNumber": "R"})
    assert len(server.requests) == 2
    assert tokens.unauthorized == [0]


async def test_headers_problem_details_and_no_token_on_public_calls(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response([])

    server = await serve("GET", "/v2/security/public-key-certificates", handler)
    api = transport(server.base_url, http)
    api.tokens = FixedTokens("access")
    await api.request(operation("get_security_public_key_certificates"))
    headers = server.requests[0][2]
    assert headers["X-Error-Format"] == "problem-details"
    assert "Authorization" not in headers


async def test_system_warning_becomes_a_python_warning_and_a_log_record(
    serve: Any, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response([], headers={"X-System-Warning": "[1]: planned maintenance | [2]: other"})

    server = await serve("GET", "/v2/security/public-key-certificates", handler)
    caplog.set_level(logging.WARNING, logger="ksef_async")
    with pytest.warns(KsefSystemWarning, match="planned maintenance"):
        await SecurityResource(transport(server.base_url, http), StorageTransport(http)).public_key_certificates()
    assert any("planned maintenance" in r.getMessage() for r in caplog.records)


async def test_part_upload_sends_exactly_the_given_request(serve: Any, http: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=201)

    server = await serve("PUT", "/storage/part", handler)
    url = server.base_url.removesuffix("/v2") + "/storage/part?sv=1&sig=SECRET"
    batch = BatchResource(transport(server.base_url, http), StorageTransport(http), None)  # type: ignore[arg-type]
    request = PartUploadRequest(
        ordinal_number=1, method="PUT", url=url, headers={"x-ms-blob-type": "BlockBlob", "x-ms-meta-x": None}
    )
    data = b"\x01" * 70_000
    assert await batch.upload_part(request, data, len(data)) == 201
    assert await batch.upload_part(request, io.BytesIO(data), len(data)) == 201
    for method, _path, headers, body in server.requests:
        assert method == "PUT"
        assert body == data
        assert headers["Content-Length"] == str(len(data))
        assert "Transfer-Encoding" not in headers
        assert "Authorization" not in headers
        assert headers["x-ms-blob-type"] == "BlockBlob"


async def test_download_checks_x_ms_meta_hash(serve: Any, http: aiohttp.ClientSession) -> None:
    good = b"<Potwierdzenie/>"
    announced = {"value": base64.b64encode(hashlib.sha256(good).digest()).decode()}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=good, headers={"x-ms-meta-hash": announced["value"]})

    server = await serve("GET", "/storage/upo", handler)
    url = server.base_url.removesuffix("/v2") + "/storage/upo?sig=SECRETSIG"
    storage = StorageTransport(http)
    assert await storage.download(url) == good
    announced["value"] = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    with pytest.raises(IntegrityError) as info:
        await storage.download(url)
    assert "SECRETSIG" not in str(info.value)
