"""Online sending against the simulator: valid, invalid, duplicate and refused invoices; statuses, lists, UPO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.errors import IntegrityError, InvoiceError
from ksef_async.online import send_online
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.runtime import SimConfig
from ksef_async.transport import HASH_HEADER

pytestmark = pytest.mark.anyio

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))
OTHER_NIP = "1111111111"


def client_for(sim: KsefSimulator, counter: Any = None) -> KsefClient:
    return KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=QUICK,
        trace_configs=[counter.trace] if counter else None,
    )


async def test_valid_invoices_are_accepted_with_upo(sim: KsefSimulator) -> None:
    invoices = list(InvoiceFactory(DEFAULT_NIP, seed=1).iter(3))
    async with client_for(sim) as client:
        result = await send_online(client, invoices)
        (session,) = result.sessions
        listed = [item async for item in client.sessions.invoices(session.reference_number, page_size=10)]
        single = await client.invoices.status(session.reference_number, result.outcomes[0].reference_number or "")
    assert result.all_accepted
    assert [o.name for o in result.outcomes] == [name for name, _ in invoices]
    numbers = {o.ksef_number for o in result.outcomes}
    assert None not in numbers
    assert len(numbers) == 3
    assert session.status_code == 200
    (upo,) = session.parsed_upo
    assert upo.session_reference_number == session.reference_number
    assert {d.ksef_number for d in upo.documents} == numbers
    assert {i.ksef_number for i in listed} == numbers
    assert single.ksef_number == result.outcomes[0].ksef_number


async def test_an_invalid_invoice_stops_everything_before_sending(sim: KsefSimulator, counter: Any) -> None:
    good = list(InvoiceFactory(DEFAULT_NIP, seed=2).iter(2))
    broken = ("broken.xml", good[0][1].replace(b"<P_2>", b"<P_2x>").replace(b"</P_2>", b"</P_2x>"))
    async with client_for(sim, counter) as client:
        with pytest.raises(InvoiceError) as info:
            await send_online(client, [*good, broken])
    assert {p.file for p in info.value.problems} == {"broken.xml"}
    assert counter["POST /sessions/online"] == 0
    assert counter["POST /auth/ksef-token"] == 0


async def test_skip_invalid_sends_the_rest_and_reports_each(sim: KsefSimulator, tmp_path: Path) -> None:
    name, data = InvoiceFactory(DEFAULT_NIP, seed=3).make(0)
    path = tmp_path / name.replace("/", "_")
    path.write_bytes(data)
    missing = tmp_path / "missing.xml"
    async with client_for(sim) as client:
        result = await send_online(client, [path, ("bad.xml", b"<not-an-invoice/>"), missing], skip_invalid=True)
    ok, bad, gone = result.outcomes
    assert ok.accepted
    assert not bad.accepted
    assert bad.problems
    assert bad.status_code is None
    assert gone.problems[0].rule == "io"
    assert not result.all_accepted


async def test_duplicate_carries_the_original_ksef_number_and_session(sim: KsefSimulator) -> None:
    invoice = InvoiceFactory(DEFAULT_NIP, seed=4).make(0)
    async with client_for(sim) as client:
        first = await send_online(client, [invoice])
        second = await send_online(client, [invoice])
    (original,) = first.outcomes
    (duplicate,) = second.outcomes
    assert original.accepted
    assert duplicate.duplicate
    assert not duplicate.accepted
    assert duplicate.original_ksef_number == original.ksef_number
    assert duplicate.original_session_reference_number == first.sessions[0].reference_number
    assert second.sessions[0].status_code == 445  # no valid invoice in the second session


async def test_invoice_of_another_seller_is_refused_with_its_status(sim: KsefSimulator) -> None:
    mine = InvoiceFactory(DEFAULT_NIP, seed=5).make(0)
    theirs = InvoiceFactory(OTHER_NIP, seed=5).make(1)
    async with client_for(sim) as client:
        result = await send_online(client, [mine, theirs])
        failed = [item async for item in client.sessions.failed_invoices(result.sessions[0].reference_number)]
    accepted, refused = result.outcomes
    assert accepted.accepted
    assert refused.status_code == 410
    assert refused.ksef_number is None
    assert refused.details
    assert [f.reference_number for f in failed] == [refused.reference_number]


async def test_session_lists_and_upo_by_api(sim: KsefSimulator) -> None:
    async with client_for(sim) as client:
        result = await send_online(client, list(InvoiceFactory(DEFAULT_NIP, seed=6).iter(2)))
        ref = result.sessions[0].reference_number
        sessions = [s async for s in client.sessions.list("Online", page_size=10)]
        status = await client.sessions.status(ref)
        assert status.upo is not None
        page = status.upo.pages[0]
        by_api = await client.sessions.upo(ref, page.reference_number)
        by_url = await client.sessions.download_upo(page.download_url)
        outcome = result.outcomes[0]
        invoice_upo = await client.sessions.invoice_upo(ref, outcome.reference_number or "")
        by_number = await client.sessions.invoice_upo_by_ksef_number(ref, outcome.ksef_number or "")
    assert ref in {s.reference_number for s in sessions}
    assert by_api == by_url == result.sessions[0].upo[0]
    assert invoice_upo == by_number
    assert outcome.ksef_number is not None
    assert outcome.ksef_number.encode() in invoice_upo


async def test_tampered_upo_download_fails_the_hash_check(sim: KsefSimulator) -> None:
    """A proxy on loopback changes one byte of the UPO but passes KSeF's ``x-ms-meta-hash`` through."""

    async def tamper(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as upstream, upstream.get(sim.public_url + request.path_qs) as response:
            body = await response.read()
            return web.Response(
                body=body.replace(b"Potwierdzenie", b"Potwierdzenia", 1),
                headers={HASH_HEADER: response.headers[HASH_HEADER]},
            )

    app = web.Application()
    app.router.add_get("/{tail:.*}", tamper)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    proxy = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with client_for(sim) as client:
            result = await send_online(client, [InvoiceFactory(DEFAULT_NIP, seed=8).make(0)], download_upo=False)
            status = await client.sessions.status(result.sessions[0].reference_number)
            assert status.upo is not None
            url = status.upo.pages[0].download_url
            assert url.startswith(sim.public_url)
            assert (await client.sessions.download_upo(url)).startswith(b"<?xml")
            with pytest.raises(IntegrityError, match=HASH_HEADER):
                await client.sessions.download_upo(proxy + url.removeprefix(sim.public_url))
    finally:
        await runner.cleanup()


async def test_invoice_refused_at_send_time_reports_the_exception_code(ksef_simulator_factory: Any) -> None:
    sim = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], config=SimConfig(max_invoices_per_session=1)
    )
    async with client_for(sim) as client:
        result = await send_online(client, list(InvoiceFactory(DEFAULT_NIP, seed=9).iter(2)), concurrency=1)
    first, second = result.outcomes
    assert first.accepted
    assert not second.accepted
    assert second.status_code is None
    assert second.reference_number is None
    assert second.details == ("exception code 21155",)
    assert result.sessions[0].status_code == 200
