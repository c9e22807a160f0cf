"""`StatusServiceClient` against the simulator's status service over loopback: each state, faults, cache, control."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from ksef_async.core.status_service import ServiceState, current_outage, outage_windows, upcoming_maintenance
from ksef_async.errors import ConfigurationError
from ksef_async.status_service import (
    PROD_STATUS_URL,
    STATUS_URL_ENV,
    TEST_STATUS_URL,
    StatusServiceClient,
    status_url_for,
)
from ksef_async.testing.simulator import KsefSimulator

pytestmark = [pytest.mark.anyio, pytest.mark.ksef_simulator(contexts=[], rate_limits="off")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_script_through_every_state(ksef_simulator: KsefSimulator) -> None:
    script = ksef_simulator.status_service
    now = ksef_simulator.clock.now_dt()
    async with StatusServiceClient(ksef_simulator.status_url, cache_ttl=0) as client:
        status = await client.status()
        assert (status.state, status.messages, status.reason) == (ServiceState.AVAILABLE, (), None)

        script.announce_maintenance(now + dt.timedelta(days=1), now + dt.timedelta(days=1, hours=2))
        messages = await client.messages()
        assert messages is not None
        (upcoming,) = upcoming_maintenance(messages, now)
        assert upcoming.category == "MAINTENANCE"

        script.start_maintenance()
        assert (await client.status()).state is ServiceState.MAINTENANCE

        event = script.start_failure()
        status = await client.status()
        assert status.state is ServiceState.FAILURE
        outage = current_outage(status.messages, ksef_simulator.clock.now_dt() + dt.timedelta(seconds=1))
        assert outage is not None
        assert (outage.event_id, outage.category, outage.end) == (event, "FAILURE", None)

        assert script.end_failure() == event
        assert (await client.status()).state is ServiceState.AVAILABLE
        messages = await client.messages()
        assert messages is not None
        windows = [w for w in outage_windows(messages) if w.event_id == event]
        assert len(windows) == 1
        assert windows[0].end is not None
        assert windows[0].start is not None
        assert windows[0].start <= windows[0].end

        total = script.start_failure(total=True)
        status = await client.status()
        assert status.state is ServiceState.TOTAL_FAILURE
        assert any(m.event_id == total and m.category == "TOTAL_FAILURE" for m in status.messages)
    assert script.requests >= 7


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("5xx", "HTTP 502 from the status service"),
        ("garbage", "the answer is not JSON"),
        ("timeout", "no answer within 0.2 s"),
    ],
)
async def test_a_failing_status_service_is_unknown(ksef_simulator: KsefSimulator, mode: str, reason: str) -> None:
    ksef_simulator.status_service.start_failure()
    ksef_simulator.status_service.set_fault(mode, delay=2.0)
    async with StatusServiceClient(ksef_simulator.status_url, timeout=0.2, cache_ttl=0) as client:
        status = await client.status()
        assert status.state is ServiceState.UNKNOWN
        assert status.reason == reason
        assert await client.messages() is None


async def test_unreachable_is_unknown_not_failure() -> None:
    async with StatusServiceClient(f"http://127.0.0.1:{_free_port()}/latarnia", timeout=2.0) as client:
        status = await client.status()
    assert status.state is ServiceState.UNKNOWN
    assert status.reason is not None
    assert status.reason.startswith("unreachable")
    assert not status.outage


async def test_answers_are_cached_for_the_ttl(ksef_simulator: KsefSimulator) -> None:
    clock = [0.0]
    script = ksef_simulator.status_service
    async with StatusServiceClient(ksef_simulator.status_url, cache_ttl=30, monotonic=lambda: clock[0]) as client:
        assert (await client.status()).state is ServiceState.AVAILABLE
        script.start_failure()
        clock[0] = 29.0
        assert (await client.status()).state is ServiceState.AVAILABLE  # cached
        assert script.requests == 1
        clock[0] = 31.0
        assert (await client.status()).state is ServiceState.FAILURE
        assert script.requests == 2
        client.forget()
        await client.status()
        assert script.requests == 3


async def test_control_route_scripts_the_service(ksef_simulator: KsefSimulator) -> None:
    control = ksef_simulator.status_url + "/control"
    async with aiohttp.ClientSession() as http:
        async with http.post(control, json={"action": "start_failure", "total": True}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["status"] == "TOTAL_FAILURE"
        async with http.post(control, json={"action": "api_down", "enabled": True}) as response:
            assert response.status == 200
        # While the outage lasts every API call answers 503.
        async with http.get(ksef_simulator.base_url + "/security/public-key-certificates") as response:
            assert response.status == 503
        async with http.post(control, json={"action": "end_failure"}) as response:
            assert (await response.json())["result"] == body["result"]
        async with http.get(ksef_simulator.base_url + "/security/public-key-certificates") as response:
            assert response.status == 200
        async with http.post(control, json={"action": "explode"}) as response:
            assert response.status == 400
        async with http.post(control, json={"action": "fault", "mode": "nope"}) as response:
            assert response.status == 400
        async with http.post(control, json={"action": "fault", "mode": "5xx"}) as response:
            assert response.status == 200
        async with http.get(ksef_simulator.status_url + "/status") as response:
            assert response.status == 502


async def test_outage_api_error_fault_only_during_an_outage(
    ksef_simulator_factory: Callable[..., Awaitable[KsefSimulator]],
) -> None:
    sim = await ksef_simulator_factory(contexts=[], rate_limits="off", faults="outage-api-error=1")
    url = sim.base_url + "/security/public-key-certificates"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert response.status == 200
        sim.status_service.start_maintenance()
        async with http.get(url) as response:
            assert response.status == 503
        sim.status_service.available()
        async with http.get(url) as response:
            assert response.status == 200
    assert sim.counters.faults["outage-api-error"] == 1


def test_base_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATUS_URL_ENV, raising=False)
    assert status_url_for() == PROD_STATUS_URL
    assert status_url_for("prod") == PROD_STATUS_URL
    assert status_url_for("test") == TEST_STATUS_URL
    assert status_url_for("demo") == TEST_STATUS_URL  # DEMO has no status service of its own
    assert status_url_for("test", "http://127.0.0.1:1/latarnia/") == "http://127.0.0.1:1/latarnia"
    monkeypatch.setenv(STATUS_URL_ENV, "http://127.0.0.1:2/x")
    assert status_url_for("prod") == "http://127.0.0.1:2/x"
    with pytest.raises(ConfigurationError, match="must start with http"):
        status_url_for(base_url="ftp://x")
    monkeypatch.delenv(STATUS_URL_ENV)
    with pytest.raises(ConfigurationError, match="environment 'mars'"):
        status_url_for("mars")
