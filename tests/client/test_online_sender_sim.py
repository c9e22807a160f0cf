"""`OnlineSender` against the simulator over loopback: one shared session, race-free reopen, rotation, cancel safety."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ksef_async import OnlineSender
from ksef_async import online as online_module
from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import ConfigurationError, InvoiceError
from ksef_async.online import InvoiceOutcome, send_online
from ksef_async.online_retry import SessionUnavailablePolicy
from ksef_async.online_sender import SenderEvent
from ksef_async.operations import API_RATE_LIMITS
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

pytestmark = pytest.mark.anyio

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), sync_rate_limits=False)


def client_for(sim: KsefSimulator, *, generous: bool = False) -> KsefClient:
    limiter = None
    if generous:  # the simulator runs with rate_limits="off": the client need not pace either
        limiter = RateLimiter(dict.fromkeys(API_RATE_LIMITS, WindowLimits(1000, 100_000, 1_000_000)))
    return KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=QUICK,
        limiter=limiter,
    )


def invoices(n: int, seed: int) -> list[bytes]:
    return [data for _, data in InvoiceFactory(DEFAULT_NIP, seed=seed).iter(n)]


def open_sessions(sim: KsefSimulator) -> list[str]:
    return [ref for ref, s in sim.state.sessions.items() if s.kind.value == "Online" and s.closed is None]


async def test_concurrent_submits_share_one_session_and_get_their_own_outcomes(sim: KsefSimulator) -> None:
    events: list[SenderEvent] = []
    async with client_for(sim) as client:
        async with OnlineSender(client, form_code="FA (3)", on_event=events.append) as sender:
            outcomes = await asyncio.gather(*(sender.submit(x) for x in invoices(8, seed=11)))
            ref = sender.session_reference_number
            assert open_sessions(sim) == [ref]  # still open between invoices
        assert sender.sessions_opened == 1
    assert all(o.accepted for o in outcomes)
    assert len({o.ksef_number for o in outcomes}) == 8
    assert {o.session_reference_number for o in outcomes} == {ref}
    (session,) = sender.sessions
    assert session.reference_number == ref
    assert session.status_code == 200
    (upo,) = session.parsed_upo
    assert {d.ksef_number for d in upo.documents} == {o.ksef_number for o in outcomes}
    assert open_sessions(sim) == []
    kinds = [e.kind for e in events]
    assert kinds.count("invoice-sent") == 8
    assert kinds.count("invoice-outcome") == 8
    assert kinds[0] == "session-opened"
    assert kinds[-1] == "session-closed"
    assert sim.counters.operations["post_sessions_online"] == 1


async def test_concurrent_21180s_cause_exactly_one_reopen(sim: KsefSimulator) -> None:
    async with client_for(sim) as client, OnlineSender(client) as sender:
        first = await sender.submit(invoices(1, seed=21)[0])
        old = first.session_reference_number
        assert old is not None
        await client.online.close(old)  # behind the sender's back: every send into it now gets 21180
        # The 12 first sends leave together, whatever the machine's load: each meets 21180 in the closed session.
        real_send = client.online.send
        arrived = 0
        all_arrived = asyncio.Event()

        async def together(*args: Any, **kwargs: Any) -> Any:
            nonlocal arrived
            arrived += 1
            if arrived <= 12:
                if arrived == 12:
                    all_arrived.set()
                await asyncio.wait_for(all_arrived.wait(), 30)
            return await real_send(*args, **kwargs)

        client.online.send = together  # type: ignore[method-assign]
        outcomes = await asyncio.gather(*(sender.submit(x) for x in invoices(12, seed=22)))
        new = sender.session_reference_number
    # 12 concurrent submits meet 21180 in the closed session (their sends count too: <= 25 in a minute)
    assert all(o.accepted for o in outcomes), [o.description for o in outcomes if not o.accepted]
    assert {o.session_reference_number for o in outcomes} == {new}
    assert new != old
    assert sender.sessions_opened == 2
    assert sim.counters.operations["post_sessions_online"] == 2
    assert sim.counters.operations["post_sessions_online_invoices"] == 1 + 12 + 12  # each resent once, no more
    assert new is not None
    assert sorted(s.reference_number for s in sender.sessions) == sorted([old, new])
    assert open_sessions(sim) == []


async def test_21184_moves_the_invoices_to_one_fresh_session(sim: KsefSimulator) -> None:
    async def no_wait(_seconds: float) -> None:
        return None

    policy = SessionUnavailablePolicy(attempts=2, sleep=no_wait)
    async with client_for(sim) as client, OnlineSender(client, unavailable=policy) as sender:
        first = await sender.submit(invoices(1, seed=31)[0])
        old = first.session_reference_number
        assert old is not None
        sim.set_session_unavailable(old)
        outcomes = await asyncio.gather(*(sender.submit(x) for x in invoices(6, seed=32)))
    assert all(o.accepted for o in outcomes)
    # an invoice that met the unavailable session names it; one sent after the replacement opened never met it
    assert {o.unavailable_sessions for o in outcomes} <= {(old,), ()}
    assert any(o.unavailable_sessions == (old,) for o in outcomes)
    assert len({o.session_reference_number for o in outcomes}) == 1
    assert old not in {o.session_reference_number for o in outcomes}
    assert sender.sessions_opened == 2
    unavailable = [s for s in sender.sessions if s.reference_number == old]
    assert unavailable[0].unavailable


async def test_idle_session_is_closed_and_the_next_submit_opens_another(sim: KsefSimulator) -> None:
    async with client_for(sim) as client, OnlineSender(client, idle_timeout=0.3) as sender:
        first = await sender.submit(invoices(1, seed=41)[0])
        for _ in range(100):
            if sender.sessions:
                break
            await asyncio.sleep(0.05)
        assert [s.reference_number for s in sender.sessions] == [first.session_reference_number]
        assert open_sessions(sim) == []
        second = await sender.submit(invoices(1, seed=42)[0])
    assert second.accepted
    assert second.session_reference_number != first.session_reference_number
    assert sender.sessions_opened == 2


async def test_rotation_before_the_session_gets_too_old(sim: KsefSimulator) -> None:
    now = [0.0]
    async with (
        client_for(sim) as client,
        OnlineSender(client, max_session_age=100.0, idle_timeout=None, clock=lambda: now[0]) as sender,
    ):
        first = await sender.submit(invoices(1, seed=51)[0])
        now[0] = 99.0
        same = await sender.submit(invoices(1, seed=52)[0])
        now[0] = 100.0
        rotated = await sender.submit(invoices(1, seed=53)[0])
    assert first.session_reference_number == same.session_reference_number != rotated.session_reference_number
    assert len(sender.sessions) == 2
    assert all(s.status_code == 200 for s in sender.sessions)


async def test_invalid_or_foreign_invoices_are_refused_before_sending(sim: KsefSimulator) -> None:
    async with client_for(sim) as client, OnlineSender(client, form_code="FA (2)") as sender:
        with pytest.raises(InvoiceError, match="does not match"):
            await sender.submit(invoices(1, seed=61)[0])  # FA (3)
        with pytest.raises(InvoiceError):
            await sender.submit(b"<not-an-invoice/>")
    assert sim.counters.operations["post_sessions_online"] == 0
    assert sender.sessions == []
    with pytest.raises(ConfigurationError):
        OnlineSender(client, form_code="XYZ (9)")
    with pytest.raises(ConfigurationError, match="not open"):
        await sender.submit(invoices(1, seed=62)[0])


async def test_cancelling_50_submits_loses_no_outcome_and_leaves_no_session_open(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], rate_limits="off", processing_delay=0.5, seed=3
    )
    events: list[SenderEvent] = []
    ten_sent = asyncio.Event()

    def on_event(event: SenderEvent) -> None:
        events.append(event)
        if sum(e.kind == "invoice-sent" for e in events) >= 10:
            ten_sent.set()

    async with client_for(sim, generous=True) as client:
        sender = OnlineSender(client, on_event=on_event, status_backoff=Backoff(initial=0.05, maximum=0.1))
        async with sender:
            tasks = [asyncio.create_task(sender.submit(x)) for x in invoices(50, seed=71)]
            await asyncio.wait_for(ten_sent.wait(), 30)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
    received = [e for s in sim.state.sessions.values() for e in s.invoices]
    sent = [e for e in events if e.kind == "invoice-sent"]
    final = [e for e in events if e.kind == "invoice-outcome"]
    assert len(received) >= 10
    # every invoice KSeF received was reported with its reference number and its final outcome
    assert {e.outcome.reference_number for e in sent if e.outcome} == {i.reference_number for i in received}
    assert {e.outcome.reference_number for e in final if e.outcome and e.outcome.accepted} == {
        i.reference_number for i in received
    }
    assert any(e.cancelled for e in final)
    assert open_sessions(sim) == []
    assert len(sender.sessions) == 1
    assert sender.sessions[0].status_code == 200


async def test_cancelling_send_online_closes_the_session_and_reports_every_received_invoice(
    ksef_simulator_factory: Any,
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], rate_limits="off", processing_delay=0.3, seed=4
    )
    reported: list[InvoiceOutcome] = []
    ten_sent = asyncio.Event()

    def on_outcome(outcome: InvoiceOutcome) -> None:
        reported.append(outcome)
        if sum(o.status_code is None for o in reported) >= 10:
            ten_sent.set()

    docs = [(f"inv-{i}.xml", data) for i, data in enumerate(invoices(50, seed=91))]
    async with client_for(sim, generous=True) as client:
        call = asyncio.create_task(send_online(client, docs, concurrency=4, on_outcome=on_outcome, max_wait=30))
        await asyncio.wait_for(ten_sent.wait(), 30)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(asyncio.gather(*online_module._BACKGROUND), 30)
    received = {e.reference_number for s in sim.state.sessions.values() for e in s.invoices}
    assert len(received) >= 10
    assert open_sessions(sim) == []
    acknowledged = {o.reference_number for o in reported if o.status_code is None}
    final = {o.reference_number for o in reported if o.accepted}
    assert acknowledged <= received
    assert final == received  # every invoice KSeF received got its final outcome reported, none was lost
