"""The simulator against hostile clients: authentication before the body, body limits per route, unguessable
secrets whatever the seed, a warning when it listens beyond loopback."""

from __future__ import annotations

import aiohttp
import pytest

from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.app import exposure_warning
from ksef_async.testing.simulator.bodylimits import DEFAULT_BODY_LIMIT, body_limit
from ksef_async.testing.simulator.state import SimState


@pytest.mark.anyio
async def test_an_anonymous_body_is_not_read_before_authentication(ksef_simulator: KsefSimulator) -> None:
    body = b"{" + b" " * (256 * 1024) + b"}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            ksef_simulator.base_url + "/sessions/online", data=body, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        assert response.status == 401
    assert ksef_simulator.counters.bytes_received == 0


@pytest.mark.anyio
async def test_a_body_over_the_route_limit_is_refused_with_413(ksef_simulator: KsefSimulator) -> None:
    body = b'{"x": "' + b"a" * (DEFAULT_BODY_LIMIT + 1) + b'"}'
    async with aiohttp.ClientSession() as http:
        for announce in (True, False):

            async def chunks(data: bytes = body) -> object:
                yield data

            payload = body if announce else chunks()
            async with http.post(
                ksef_simulator.base_url + "/auth/challenge", data=payload, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 413, announce
    assert ksef_simulator.counters.bytes_received == 0


def test_invoice_sending_has_room_for_a_10_mb_invoice_and_nothing_else_does() -> None:
    assert body_limit("post_sessions_online_invoices") >= 10_000_000 * 4 // 3
    assert body_limit("post_auth_challenge") == DEFAULT_BODY_LIMIT


def test_the_signing_secret_does_not_follow_from_the_seed() -> None:
    first = SimState(seed=7, processing_delay=0.0, storage_delay=0.0)
    second = SimState(seed=7, processing_delay=0.0, storage_delay=0.0)
    assert first.secret != second.secret
    assert first.rng.random() == second.rng.random()  # identifiers stay reproducible


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_listening_beyond_loopback_is_warned_about(host: str) -> None:
    warning = exposure_warning(host)
    assert warning is not None
    assert host in warning


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_is_not_warned_about(host: str) -> None:
    assert exposure_warning(host) is None
