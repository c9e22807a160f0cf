"""`send_online` and error 21184 (session temporarily unavailable) against the simulator over loopback.

Once: the invoice is retried after the policy's wait and accepted. Persistent: the session is given up, closed, and
the invoices it did not accept go to a fresh session, each accepted exactly once. Reopening off: a typed error and
nothing resent.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError, SessionTemporarilyUnavailableError
from ksef_async.online import SessionUnavailablePolicy, send_online
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

from .conftest import RequestCounter

pytestmark = pytest.mark.anyio

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))


class FakeSleep:
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(sim: KsefSimulator, *traces: aiohttp.TraceConfig) -> KsefClient:
    return KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=QUICK,
        trace_configs=list(traces) or None,
    )


def sends(counter: RequestCounter, ref: str) -> int:
    return counter[f"POST /sessions/online/{ref}/invoices"]


def entries(sim: KsefSimulator) -> dict[str, list[tuple[str, int]]]:
    """What KSeF holds: per online session, ``(invoice hash, final code)`` of every invoice it took."""
    return {
        ref: [(e.invoice_hash, e.final_code) for e in session.invoices] for ref, session in sim.state.sessions.items()
    }


async def test_21184_once_is_retried_and_accepted(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=11, faults="session-unavailable:1"
    )
    sleep = FakeSleep()
    counter = RequestCounter()
    invoices = list(InvoiceFactory(DEFAULT_NIP, seed=21).iter(3))
    policy = SessionUnavailablePolicy(attempts=3, base_delay=0.5, sleep=sleep)
    async with client_for(sim, counter.trace) as client:
        result = await send_online(client, invoices, concurrency=1, unavailable=policy)
    assert result.all_accepted
    (session,) = result.sessions
    assert not session.unavailable
    assert sleep.waits == [0.5]
    assert sim.counters.faults["session-unavailable"] == 1
    assert sends(counter, session.reference_number) == 4  # one refused, then three accepted
    assert {o.session_reference_number for o in result.outcomes} == {session.reference_number}
    assert all(o.unavailable_sessions == () for o in result.outcomes)
    held = entries(sim)[session.reference_number]
    assert len(held) == 3
    assert {code for _, code in held} == {200}


async def test_persistent_21184_moves_the_rest_to_a_fresh_session(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=12)
    counter = RequestCounter()
    downed: list[str] = []

    async def take_down_after_first_acceptance(_session: Any, _ctx: Any, params: Any) -> None:
        # Maintenance starts right after KSeF acknowledged the first invoice of the first session.
        path = params.url.path
        if not downed and params.method == "POST" and path.endswith("/invoices") and params.response.status == 202:
            ref = path.split("/")[-2]
            sim.set_session_unavailable(ref)
            downed.append(ref)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(take_down_after_first_acceptance)
    sleep = FakeSleep()
    invoices = list(InvoiceFactory(DEFAULT_NIP, seed=22).iter(3))
    policy = SessionUnavailablePolicy(attempts=3, base_delay=1.0, max_delay=1.5, sleep=sleep)
    async with client_for(sim, counter.trace, trace) as client:
        result = await send_online(client, invoices, concurrency=1, unavailable=policy)

    assert result.all_accepted
    first, fresh = result.sessions
    assert first.reference_number == downed[0]
    assert first.unavailable
    assert first.status_code == 200  # it kept the invoice it had accepted
    assert not fresh.unavailable
    assert fresh.status_code == 200
    kept, *moved = result.outcomes
    assert kept.session_reference_number == first.reference_number
    assert kept.unavailable_sessions == ()
    for outcome in moved:
        assert outcome.session_reference_number == fresh.reference_number
        assert outcome.unavailable_sessions == (first.reference_number,)
    # Exactly once: the 21184 sends stored nothing; the accepted invoice was never sent again.
    held = entries(sim)
    assert len(held[first.reference_number]) == 1
    assert len(held[fresh.reference_number]) == 2
    hashes = [h for session in held.values() for h, _ in session]
    assert sorted(hashes) == sorted(o.invoice_hash or "" for o in result.outcomes)
    assert sends(counter, first.reference_number) == 1 + 3  # the accepted one, then three tries of the second
    assert sends(counter, fresh.reference_number) == 2
    assert sleep.waits == [1.0, 1.5]  # doubled, capped
    assert counter["POST /sessions/online"] == 2
    assert counter[f"POST /sessions/online/{first.reference_number}/close"] == 1
    report = result.to_json()
    assert report["sessions"][0]["unavailable"] is True
    assert report["invoices"][1]["unavailable_sessions"] == [first.reference_number]
    assert report["invoices"][1]["session_reference_number"] == fresh.reference_number


async def test_21184_with_reopening_off_is_a_typed_error_and_nothing_is_resent(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=13, faults="session-down:1"
    )
    counter = RequestCounter()
    sleep = FakeSleep()
    policy = SessionUnavailablePolicy(attempts=2, base_delay=0.1, reopen=False, sleep=sleep)
    async with client_for(sim, counter.trace) as client:
        with pytest.raises(SessionTemporarilyUnavailableError) as info:
            await send_online(
                client, list(InvoiceFactory(DEFAULT_NIP, seed=23).iter(3)), concurrency=1, unavailable=policy
            )
    assert info.value.has_code(21184)
    (ref,) = sim.state.sessions
    assert counter["POST /sessions/online"] == 1
    assert sends(counter, ref) == 2  # one invoice tried twice; the session was then given up
    assert counter[f"POST /sessions/online/{ref}/close"] == 1
    assert sim.state.sessions[ref].closed is not None
    assert entries(sim) == {ref: []}
    assert sleep.waits == [0.1]


async def test_21184_in_every_session_stops_at_max_sessions(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=14, faults="session-down"
    )
    counter = RequestCounter()
    policy = SessionUnavailablePolicy(attempts=1, max_sessions=2, sleep=FakeSleep())
    async with client_for(sim, counter.trace) as client:
        with pytest.raises(SessionTemporarilyUnavailableError):
            await send_online(client, list(InvoiceFactory(DEFAULT_NIP, seed=24).iter(2)), unavailable=policy)
    assert counter["POST /sessions/online"] == 2
    assert all(not session.invoices and session.closed is not None for session in sim.state.sessions.values())


def test_policy_waits_and_validation() -> None:
    policy = SessionUnavailablePolicy(base_delay=2.0, max_delay=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]
    assert policy.delay(10_000) == 5.0
    for bad in ({"attempts": 0}, {"max_sessions": 0}, {"base_delay": -1.0}, {"max_delay": float("inf")}):
        with pytest.raises(ConfigurationError):
            SessionUnavailablePolicy(**bad)


async def test_a_session_down_from_the_start_is_replaced(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=15, faults="session-down:1"
    )
    policy = SessionUnavailablePolicy(attempts=2, sleep=FakeSleep())
    async with KsefClient(
        sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP, config=QUICK
    ) as client:
        result = await send_online(client, list(InvoiceFactory(DEFAULT_NIP, seed=25).iter(4)), unavailable=policy)
    assert result.all_accepted
    down, fresh = result.sessions
    assert down.unavailable
    assert down.status_code == 440  # cancelled: KSeF took no invoice in it
    assert fresh.status_code == 200
    assert all(o.session_reference_number == fresh.reference_number for o in result.outcomes)
    assert all(o.unavailable_sessions == (down.reference_number,) for o in result.outcomes)
    held = entries(sim)
    assert held[down.reference_number] == []
    assert len(held[fresh.reference_number]) == 4
