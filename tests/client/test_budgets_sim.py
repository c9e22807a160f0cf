"""Limiter budgets over loopback: bounded waits with a correct Retry-After, usage without API calls, outages that cost
no slots (refused connections give their slot back, one probe at a time, a 401 never costs a second slot)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from typing import Any

import pytest

from ksef_async import OnlineSender
from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import RateLimitedError, RateLimitWaitExceededError
from ksef_async.online_sender import SenderEvent
from ksef_async.ratelimit import limiter_wait
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

pytestmark = pytest.mark.anyio

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), sync_rate_limits=False)


def client_for(sim: KsefSimulator, config: ClientConfig = QUICK) -> KsefClient:
    return KsefClient(sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP, config=config)


async def test_a_bounded_wait_raises_before_sending_with_the_real_retry_after(sim: KsefSimulator) -> None:
    async with client_for(sim) as client:
        await client.login()
        client.limiter.update_limits({"sessionList": WindowLimits(1, 2, 10)})
        first = time.monotonic()
        for _ in range(2):
            [s async for s in client.sessions.list("Online")]
        usage = await client.limiter.usage("sessionList")
        minute = next(w for w in usage.windows if w.seconds == 60)
        assert (minute.used, minute.remaining, minute.limit) == (2, 0, 2)
        with limiter_wait(5.0), pytest.raises(RateLimitWaitExceededError) as caught:
            [s async for s in client.sessions.list("Online")]
        error = caught.value
        assert isinstance(error, RateLimitedError)
        assert error.group == "sessionList"
        assert error.retry_after is not None
        # the first admission leaves the (safety-lengthened) 60 s window at first + 63 s
        expected = first + 63.0 - time.monotonic()
        assert expected - 1.5 <= error.retry_after <= expected + 0.5
        assert "nothing was sent" in str(error)
        assert usage.next_free - client.limiter.now() == pytest.approx(error.retry_after, abs=1.0)
    assert sim.counters.operations["get_sessions"] == 2


async def test_the_client_wide_default_bounds_every_call_and_a_call_may_lift_it(sim: KsefSimulator) -> None:
    config = ClientConfig(
        auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), sync_rate_limits=False, max_limiter_wait=0.0
    )
    async with client_for(sim, config) as client:
        await client.login()
        client.limiter.update_limits({"sessionList": WindowLimits(1, 5, 10)})
        first = time.monotonic()
        [s async for s in client.sessions.list("Online")]
        started = time.monotonic()
        with pytest.raises(RateLimitWaitExceededError) as caught:
            [s async for s in client.sessions.list("Online")]
        refused = time.monotonic()
        # Refused without waiting for the slot, which frees 1.05 s after the first call's answer: the figure it
        # reports is that time, seen from the refusal (bounds from the clock around both calls, so load cannot
        # break them).
        assert refused - started < 1.0
        assert first + 1.0 - refused < (caught.value.retry_after or 0) <= 1.3
        with limiter_wait(None):
            [s async for s in client.sessions.list("Online")]  # waits its ~1.25 s
    assert sim.counters.operations["get_sessions"] == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_an_outage_costs_no_slots_and_sending_resumes_within_a_second(ksef_simulator_factory: Any) -> None:
    """15 s of refused connections with 10 invoices waiting, then the server returns on the same port without the
    tokens it issued (every waiting send first meets a 401)."""
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], port=free_port(), seed=5, strict_contract=False
    )
    events: list[tuple[float, SenderEvent]] = []
    docs = [data for _, data in InvoiceFactory(DEFAULT_NIP, seed=81).iter(11)]
    async with (
        client_for(sim) as client,
        OnlineSender(client, on_event=lambda e: events.append((time.monotonic(), e))) as sender,
    ):
        assert (await sender.submit(docs[0])).accepted
        await sim.stop()
        waiting = [asyncio.create_task(sender.submit(doc)) for doc in docs[1:]]
        await asyncio.sleep(15.0)
        reach = client._transports[0].reachability
        assert not reach.up
        during_outage = client.reachable
        assert during_outage is False
        assert 5 <= reach.probes <= 25  # one probe at a time, about one a second: no storm of retries
        assert not any(task.done() for task in waiting)
        sim.state.secret = secrets.token_bytes(32)  # the server comes back without the tokens it issued: 401s
        await sim.start()
        back = time.monotonic()
        outcomes = await asyncio.gather(*waiting)
        assert client.reachable is True
        usage = await client.limiter.usage("invoiceSend")
    assert all(o.accepted for o in outcomes), [o.description for o in outcomes]
    first_after = min(t for t, e in events if e.kind == "invoice-sent" and t > back)
    # The next probe comes within a second of the server's return; the token refresh and the send follow it (a
    # loaded test machine once took 1.09 s for all three).
    assert first_after - back < 2.0
    received = sum(len(s.invoices) for s in sim.state.sessions.values())
    assert received == 11
    hour = next(w for w in usage.windows if w.seconds == 3600)
    assert hour.used == received  # window use equals the invoices that reached the server
    # the first sends after recovery met 401s (which KSeF counts against no context): they cost no slot
    assert sim.counters.requests["invoiceSend"] > 10  # counted since the restart: 10 invoices, plus the 401s


async def test_a_simulator_without_limits_says_so_and_the_client_stops_pacing(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], rate_limits="off")
    config = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))  # sync_rate_limits on
    async with client_for(sim, config) as client:
        await client.login()
        assert client.limiter.limits["sessionList"] == WindowLimits(None)
        assert (await client.limiter.usage("sessionList")).windows == ()
        started = time.monotonic()
        for _ in range(25):  # production: 5/s, 10/min would make this take minutes
            [s async for s in client.sessions.list("Online")]
        assert time.monotonic() - started < 10
    assert sim.counters.rate_limited == 0
