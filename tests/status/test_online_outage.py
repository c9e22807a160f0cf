"""The online sender meeting API 503s during an announced KSeF failure: it waits, then sends every invoice once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.online import send_online
from ksef_async.outage import OutageGuard, OutageNotice, OutagePolicy
from ksef_async.status_service import StatusServiceClient
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.transport import RetryPolicy

pytestmark = pytest.mark.anyio

QUICK = ClientConfig(
    auth_poll_backoff=Backoff(initial=0.01, maximum=0.05),
    retry=RetryPolicy(attempts=2, timeout=5.0, wait_initial=0.01, wait_max=0.02, wait_jitter=0.0),
)


async def test_online_send_waits_for_the_failure_to_end(
    ksef_simulator_factory: Callable[..., Awaitable[KsefSimulator]],
) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=4, rate_limits="off")
    sim.status_service.api_down = True
    event = sim.status_service.start_failure()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            sim.status_service.end_failure()
        await asyncio.sleep(0)

    notices: list[OutageNotice] = []
    invoices = list(InvoiceFactory(DEFAULT_NIP, seed=9).iter(3))
    async with StatusServiceClient(sim.status_url, cache_ttl=0) as status:
        guard = OutageGuard(status, OutagePolicy(poll_interval=45), on_notice=notices.append, sleep=sleep)
        async with KsefClient(
            sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP, config=QUICK
        ) as client:
            result = await send_online(client, invoices, outage=guard)
    assert result.all_accepted
    assert len(sim.state.invoices) == 3
    assert sleeps == [45.0, 45.0]
    assert notices[0].message.startswith("KSeF reports FAILURE since ")
    assert notices[-1].finished
    (window,) = result.to_json()["outages"]
    assert window["eventId"] == event
    assert window["end"] is not None
    assert window["sendDeadline"] is not None
