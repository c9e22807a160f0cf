"""The simulator's 2.9.0 rate limits over loopback: close groups, ``global`` and ``anonymous`` per IP, 429 bodies."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from ksef_async.core.crypto import SessionKey
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import ConfigurationError
from ksef_async.operations import operation
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.ratelimits import RateLimiter, Refusal

from .conftest import FA3, NIP, TOKEN, Api

pytestmark = pytest.mark.anyio

OTHER_NIP = "1111111111"
OTHER_TOKEN = "20250101-EC-1111111111-0000000000-00|nip-1111111111|" + "1" * 64


def _details(body: Any) -> str:
    """The group-naming text of a 429 body, either form."""
    if "status" in body and isinstance(body["status"], dict):
        return " ".join(body["status"]["details"])
    return str(body["detail"])


@pytest.mark.ksef_simulator(rate_limit_overrides={"onlineSession": WindowLimits(1, 1, 1)})
async def test_closing_a_session_counts_in_its_own_group(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    ref = await api.open_online(key)
    # onlineSession is spent for the hour, yet the close goes through: it counts in onlineSessionClose.
    status, body, _ = await api.call("POST", f"/sessions/online/{ref}/close")
    assert status == 204, body
    request = {"formCode": FA3, "encryption": await api.encryption(key)}
    status, body, headers = await api.call("POST", "/sessions/online", json=request)
    assert status == 429
    assert "onlineSession." in _details(body)
    assert int(headers["Retry-After"]) >= 1
    assert ksef_simulator.counters.requests["onlineSessionClose"] == 1
    assert ksef_simulator.counters.requests["onlineSession"] == 2  # the refused one is seen, not admitted


@pytest.mark.ksef_simulator(
    contexts=[(NIP, TOKEN), (OTHER_NIP, OTHER_TOKEN)], rate_limit_overrides={"global": WindowLimits(8)}
)
async def test_global_counts_every_operation_of_one_ip_across_contexts_and_connections(
    ksef_simulator: KsefSimulator,
) -> None:
    async with aiohttp.ClientSession() as http_a, aiohttp.ClientSession() as http_b:
        a, b = Api(http_a, ksef_simulator.base_url), Api(http_b, ksef_simulator.base_url)
        await a.login()  # 5 or 6 requests: within 8/s
        ksef_simulator.clock.advance(2)
        await b.login(OTHER_NIP, OTHER_TOKEN)
        ksef_simulator.clock.advance(2)
        # Different contexts, different connections, different groups: 8 requests of this IP in one second.
        statuses = []
        for api, path in [(a, "/limits/context"), (b, "/limits/subject"), (a, "/rate-limits"), (b, "/tokens")] * 2:
            statuses.append((await api.call("GET", path))[0])
        assert statuses == [200] * 8
        status, body, headers = await b.call("GET", "/limits/context", headers={"X-Error-Format": "problem-details"})
        assert status == 429
        assert "grupy global." in _details(body)
        assert headers["Retry-After"] == "1"
        # The refusal counted nowhere: after the window, the other context's group still has room.
        ksef_simulator.clock.advance(1)
        assert (await b.call("GET", "/limits/context"))[0] == 200
    assert ksef_simulator.counters.rate_limited == 1


@pytest.mark.ksef_simulator(rate_limit_overrides={"anonymous": WindowLimits(3)})
async def test_anonymous_operations_share_one_counter_per_ip(ksef_simulator: KsefSimulator) -> None:
    async with aiohttp.ClientSession() as http_a, aiohttp.ClientSession() as http_b:
        a, b = Api(http_a, ksef_simulator.base_url), Api(http_b, ksef_simulator.base_url)
        assert (await a.call("POST", "/auth/challenge"))[0] == 200
        assert (await b.call("GET", "/security/public-key-certificates"))[0] == 200
        assert (await b.call("POST", "/auth/challenge"))[0] == 200
        status, body, _ = await a.call("GET", "/security/public-key-certificates")
    assert status == 429
    assert "grupy anonymous." in _details(body)


@pytest.mark.ksef_simulator(rate_limits="off", rate_limit_overrides={"global": WindowLimits(1)})
async def test_off_turns_global_off_too(api: Api) -> None:
    statuses = [(await api.call("POST", "/auth/challenge"))[0] for _ in range(5)]
    assert statuses == [200] * 5


@pytest.mark.ksef_simulator(rate_limit_overrides={"global": WindowLimits(50)})
async def test_the_environment_override_survives_testdata_resets(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    _, limits, _ = await api.call("GET", "/rate-limits")
    assert len(limits) == 17
    assert limits["global"] == {"perSecond": 50, "perMinute": -1, "perHour": -1}
    assert limits["anonymous"] == {"perSecond": 60, "perMinute": -1, "perHour": -1}
    assert limits["onlineSessionClose"] == {"perSecond": 20, "perMinute": 60, "perHour": 240}
    assert limits["batchSessionClose"] == {"perSecond": 20, "perMinute": 40, "perHour": 120}
    custom = {group: {"perSecond": 9, "perMinute": 90, "perHour": 900} for group in limits}  # extra groups ignored
    assert (await api.call("POST", "/testdata/rate-limits", json={"rateLimits": custom}))[0] == 200
    _, changed, _ = await api.call("GET", "/rate-limits")
    assert changed["invoiceSend"] == {"perSecond": 9, "perMinute": 90, "perHour": 900}
    assert changed["global"] == limits["global"]
    assert changed["onlineSessionClose"] == limits["onlineSessionClose"]
    assert (await api.call("DELETE", "/testdata/rate-limits"))[0] == 200
    assert (await api.call("GET", "/rate-limits"))[1] == limits


# -- the simulator's limiter without I/O ---------------------------------------------------------------------------


def test_the_group_with_the_longer_wait_is_named_and_a_refusal_counts_nowhere() -> None:
    lim = RateLimiter(overrides={"global": WindowLimits(2), "sessionList": WindowLimits(1, 1, 1)})
    sessions, limits = operation("get_sessions"), operation("get_limits_context")
    assert lim.admit_request(sessions, "Nip:1", 0.0, ip="127.0.0.1") is None
    # sessionList is spent for an hour and global has room: the group refuses.
    assert lim.admit_request(sessions, "Nip:1", 0.1, ip="127.0.0.1") == Refusal("sessionList", 3599.9)
    assert lim.admit_request(limits, "Nip:2", 0.2, ip="127.0.0.1") is None  # global: 2 of 2 (refusal not counted)
    refusal = lim.admit_request(limits, "Nip:2", 0.3, ip="127.0.0.1")
    assert refusal is not None
    assert (refusal.group, round(refusal.wait, 6)) == ("global", 0.7)
    # Both refuse: the longer wait (sessionList) is named, so that Retry-After covers both.
    refusal = lim.admit_request(sessions, "Nip:1", 0.4, ip="127.0.0.1")
    assert refusal is not None
    assert refusal.group == "sessionList"
    # Another address has its own global; no address counts no global.
    assert lim.admit_request(limits, "Nip:2", 0.5, ip="10.0.0.2") is None
    assert lim.admit(limits, "Nip:3", 0.6) is None


def test_overrides_name_known_groups_with_valid_limits() -> None:
    with pytest.raises(ConfigurationError, match="unknown rate-limit group 'globals'"):
        RateLimiter(overrides={"globals": WindowLimits(5)})
    with pytest.raises(ConfigurationError, match="integer >= 1"):
        RateLimiter(overrides={"global": WindowLimits(0)})
    assert RateLimiter(overrides={"global": WindowLimits(5)}).effective()["global"] == WindowLimits(5)
