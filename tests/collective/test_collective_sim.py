"""Collective identifiers through ``client.collective_identifiers`` against the simulator (loopback)."""

from __future__ import annotations

import datetime as dt
import decimal
import random
import re
from typing import Any

import pytest

from ksef_async.core.identifiers import crc8, generate_ksef_number
from ksef_async.errors import (
    BadRequestError,
    CollectiveIdentifierCapError,
    ConfigurationError,
    DifferentSellersError,
    DuplicateKsefNumberError,
    ForbiddenError,
    InvoiceNotFoundError,
    ResponseFormatError,
)
from ksef_async.models import CollectiveIdentifierInvoice, SetSessionLimitsRequest
from ksef_async.models.converter import structure
from ksef_async.resources.collective import payment
from ksef_async.testing.simulator import KsefSimulator

from .conftest import SELLER, World, client_of

pytestmark = pytest.mark.anyio

CI_NUMBER = re.compile(r"^(\d{10})-IZ(\d{6})-([0-9A-F]{12})-([0-9A-F]{2})$")


def _window(sim: KsefSimulator) -> tuple[dt.datetime, dt.datetime]:
    now = sim.clock.now_dt()
    return now - dt.timedelta(days=1), now + dt.timedelta(days=1)


def _detailed(number: str, amount: str, text: str) -> CollectiveIdentifierInvoice:
    return CollectiveIdentifierInvoice(ksef_number=number, payment=payment(amount, "PLN"), description=text)


@pytest.mark.covers("post_collective_identifiers", "get_collective_identifiers_ksef_by_ksef_number")
async def test_create_returns_a_35_character_number_with_its_crc(world: World) -> None:
    sim = world.sim
    async with client_of(sim, SELLER, world.tokens[SELLER]) as client:
        number = await client.collective_identifiers.create(world.to_b1[:2])
        found = [c async for c in client.collective_identifiers.by_ksef_number(world.to_b1[0])]
    match = CI_NUMBER.fullmatch(number)
    assert match is not None
    assert len(number) == 35
    assert match.group(1) == SELLER
    assert match.group(2) == sim.clock.now_dt().strftime("%Y%m")
    assert match.group(4) == f"{crc8(number[:32].encode()):02X}"
    assert [(c.collective_identifier_number, c.created_in_current_context) for c in found] == [(number, True)]
    assert sim.counters.operations["post_collective_identifiers"] == 1
    assert sim.counters.requests["collectiveIdentifier"] == 2  # both operations count in their own group


@pytest.mark.covers("post_collective_identifiers")
async def test_every_refusal_code(world: World) -> None:
    unknown = generate_ksef_number(SELLER, dt.date(2026, 7, 2), random.Random(99))
    async with client_of(world.sim, SELLER, world.tokens[SELLER]) as client:
        ci = client.collective_identifiers
        with pytest.raises(InvoiceNotFoundError) as not_found:
            await ci.create([world.to_b1[0], unknown])
        assert not_found.value.has_code(71001)
        assert not_found.value.ksef_numbers == [unknown]
        with pytest.raises(DifferentSellersError) as sellers:
            await ci.create([world.to_b1[0], world.foreign[0]])
        assert sellers.value.has_code(71004)
        # The client refuses duplicates itself; the simulator's own 71005 is reached with a raw body.
        with pytest.raises(ConfigurationError, match=r"invoices\[1\]\.ksefNumber"):
            await ci.create([world.to_b1[0], world.to_b1[0]])
        raw = {"invoices": [{"ksefNumber": world.to_b1[0]}, {"ksefNumber": world.to_b1[0]}]}
        with pytest.raises(DuplicateKsefNumberError) as duplicate:
            await ci._send("post_collective_identifiers", json_body=raw)
        assert duplicate.value.ksef_numbers == [world.to_b1[0]]
        # One invoice may be in at most 132 CIs of a context: the 133rd is refused with 71002.
        for index in range(132):
            await ci.create([world.to_b1[0], world.to_b1[1 + index % 13]])
        with pytest.raises(CollectiveIdentifierCapError) as cap:
            await ci.create([world.to_b1[0], world.to_b1[1]])
        assert cap.value.has_code(71002)
        assert world.to_b1[0] in cap.value.ksef_numbers
        # Another context (the buyer, a party of the invoice) still may.
    async with client_of(world.sim, world.b1, world.tokens[world.b1]) as buyer:
        assert len(await buyer.collective_identifiers.create(world.to_b1[:2])) == 35


@pytest.mark.covers("post_collective_identifiers", "post_testdata_limits_context_session")
async def test_the_context_limit_caps_the_invoices_of_one_identifier(world: World) -> None:
    limits = structure(
        {
            "onlineSession": {"maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3, "maxInvoices": 100},
            "batchSession": {"maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3, "maxInvoices": 100},
            "collectiveIdentifier": {"maxInvoices": 2},
        },
        SetSessionLimitsRequest,
    )
    async with client_of(world.sim, SELLER, world.tokens[SELLER]) as client:
        await client.testdata.set_session_limits(limits)
        assert len(await client.collective_identifiers.create(world.to_b1[:2])) == 35
        with pytest.raises(BadRequestError) as refused:
            await client.collective_identifiers.create(world.to_b1[:3])
    assert refused.value.has_code(21405)


async def test_bad_input_is_refused_before_sending(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    async with client_of(world.sim, SELLER, world.tokens[SELLER]) as client:
        ci = client.collective_identifiers
        before = sum(world.sim.counters.operations.values())
        with pytest.raises(ConfigurationError, match="at least 2"):
            await ci.create(world.to_b1[:1])
        with pytest.raises(ConfigurationError, match=r"invoices\[1\]\.ksefNumber: not a valid KSeF number"):
            await ci.create([world.to_b1[0], world.to_b1[1][:-2] + "00"])
        with pytest.raises(ConfigurationError, match=r"invoices\[0\]\.description"):
            await ci.create(
                [CollectiveIdentifierInvoice(ksef_number=world.to_b1[0], description="x" * 513), world.to_b1[1]]
            )
        with pytest.raises(ConfigurationError, match="dateCreatedFrom: must be timezone-aware"):
            await anext(ci.query(now.replace(tzinfo=None), now))
        with pytest.raises(ConfigurationError, match="longer than 100 days"):
            await anext(ci.query(now - dt.timedelta(days=101), now))
        with pytest.raises(ConfigurationError, match="dateCreatedTo: before"):
            await anext(ci.query(now, now - dt.timedelta(seconds=1)))
        with pytest.raises(ConfigurationError, match="1 to 10"):
            await anext(ci.invoices([f"{SELLER}-IZ202612-{i:012X}-00" for i in range(11)]))
        with pytest.raises(ConfigurationError, match=r"collectiveIdentifierNumbers\[0\]"):
            await anext(ci.invoices(["not-a-ci"]))
        with pytest.raises(ConfigurationError, match="page_size"):
            await anext(ci.by_ksef_number(world.to_b1[0], page_size=201))
        with pytest.raises(ConfigurationError, match="ksefNumber"):
            await anext(ci.by_ksef_number("1234"))
        with pytest.raises(ConfigurationError, match=r"payment\.amount"):
            payment("abc", "PLN")
    assert sum(world.sim.counters.operations.values()) == before  # nothing sent, not even a login


@pytest.mark.covers("post_collective_identifiers_query")
async def test_query_window_filters_sorting_and_paging(world: World) -> None:
    sim = world.sim
    start, end = _window(sim)
    async with client_of(sim, SELLER, world.tokens[SELLER]) as client:
        ci = client.collective_identifiers
        made = []
        for index in range(11):
            made.append(await ci.create(world.to_b1[index : index + 2 + index % 2]))
            sim.clock.advance(1.0)
        pages = [p async for p in ci.query_pages(start, end + dt.timedelta(seconds=30), page_size=10)]
        big = [c async for c in ci.query(start, end + dt.timedelta(seconds=30), invoice_count_from=3)]
        one = [c async for c in ci.query(start, end + dt.timedelta(seconds=30), number=made[4])]
        earlier = [c async for c in ci.query(start - dt.timedelta(days=99), start)]
    assert [len(p.collective_identifiers) for p in pages] == [10, 1]
    assert pages[0].continuation_token
    assert not pages[1].continuation_token
    listed = [c for p in pages for c in p.collective_identifiers]
    assert [c.collective_identifier_number for c in listed] == made[::-1]  # dateCreated descending
    assert all(c.created_in_current_context for c in listed)
    assert [c.invoice_count for c in listed] == [2 + i % 2 for i in range(11)][::-1]
    assert {c.collective_identifier_number for c in big} == {made[i] for i in range(11) if i % 2}
    assert [c.collective_identifier_number for c in one] == [made[4]]
    assert earlier == []


@pytest.mark.covers("post_collective_identifiers_query")
async def test_the_simulator_refuses_a_window_over_100_days(world: World) -> None:
    start, _ = _window(world.sim)
    body = {"dateCreatedFrom": start.isoformat(), "dateCreatedTo": (start + dt.timedelta(days=101)).isoformat()}
    async with client_of(world.sim, SELLER, world.tokens[SELLER]) as client:
        with pytest.raises(BadRequestError) as refused:
            await client.collective_identifiers._send("post_collective_identifiers_query", json_body=body)
    assert refused.value.has_code(21405)


@pytest.mark.covers("post_collective_identifiers", "post_collective_identifiers_invoices")
async def test_invoices_show_details_only_to_the_creator_or_a_party(world: World) -> None:
    sim = world.sim
    a, b = world.to_b1[0], world.to_b2[0]
    async with client_of(sim, SELLER, world.tokens[SELLER]) as seller:
        detailed = await seller.collective_identifiers.create(
            [_detailed(a, "100.50", "Opis 1"), _detailed(b, "45", "Opis 2")]
        )
        plain = await seller.collective_identifiers.create(world.to_b2[1:3])
        mine = [i async for i in seller.collective_identifiers.invoices([detailed, plain])]
    async with client_of(sim, world.b1, world.tokens[world.b1]) as buyer:
        seen_by_b1 = [i async for i in buyer.collective_identifiers.invoices([detailed])]
    async with client_of(sim, world.stranger, world.tokens[world.stranger]) as stranger:
        seen_by_stranger = [i async for i in stranger.collective_identifiers.invoices([detailed, plain])]
    expected_order = sorted(
        [(a, detailed), (b, detailed), (world.to_b2[1], plain), (world.to_b2[2], plain)], reverse=True
    )
    assert [(i.ksef_number, i.collective_identifier_number) for i in mine] == expected_order
    details = {i.ksef_number: (i.payment.amount if i.payment else None, i.description, i.details_hidden) for i in mine}
    assert details[a] == (decimal.Decimal("100.5"), "Opis 1", False)
    assert details[world.to_b2[1]] == (None, None, False)  # nothing was set: not hidden
    by_b1 = {i.ksef_number: (i.description, i.details_hidden) for i in seen_by_b1}
    assert by_b1 == {a: ("Opis 1", False), b: (None, True)}  # b1 is a party of a only
    hidden = {i.ksef_number: (i.payment, i.description, i.details_hidden) for i in seen_by_stranger}
    assert hidden[a] == (None, None, True)
    assert hidden[b] == (None, None, True)
    assert hidden[world.to_b2[1]] == (None, None, False)


@pytest.mark.covers("post_collective_identifiers_invoices")
async def test_invoice_pages_follow_the_continuation_token(world: World) -> None:
    async with client_of(world.sim, SELLER, world.tokens[SELLER]) as client:
        ci = client.collective_identifiers
        number = await ci.create(world.to_b1[:12])
        pages = [p async for p in ci.invoice_pages([number], page_size=10)]
    assert [len(p.invoices) for p in pages] == [10, 2]
    assert [i.ksef_number for p in pages for i in p.invoices] == sorted(world.to_b1[:12], reverse=True)


@pytest.mark.covers("get_collective_identifiers_ksef_by_ksef_number")
async def test_by_ksef_number_lists_newest_first_for_the_seller_and_the_parties(world: World) -> None:
    sim = world.sim
    async with client_of(sim, SELLER, world.tokens[SELLER]) as seller:
        made = []
        for index in range(12):
            made.append(await seller.collective_identifiers.create([world.to_b1[0], world.to_b1[1 + index]]))
            sim.clock.advance(1.0)
        pages = [p async for p in seller.collective_identifiers.by_ksef_number_pages(world.to_b1[0])]
    async with client_of(sim, world.b1, world.tokens[world.b1]) as buyer:
        by_buyer = [c async for c in buyer.collective_identifiers.by_ksef_number(world.to_b1[0], page_size=200)]
    async with client_of(sim, world.stranger, world.tokens[world.stranger]) as stranger:
        by_stranger = [c async for c in stranger.collective_identifiers.by_ksef_number(world.to_b1[0])]
    assert [len(p.collective_identifiers) for p in pages] == [10, 2]
    assert [c.collective_identifier_number for p in pages for c in p.collective_identifiers] == made[::-1]
    assert [c.collective_identifier_number for c in by_buyer] == made[::-1]
    assert not any(c.created_in_current_context for c in by_buyer)
    assert by_stranger == []


@pytest.mark.covers("post_collective_identifiers_query")
async def test_a_repeated_continuation_token_is_an_error_not_a_loop(world: World, monkeypatch: Any) -> None:
    sim = world.sim
    start, end = _window(sim)
    async with client_of(sim, SELLER, world.tokens[SELLER]) as client:
        for index in range(11):
            await client.collective_identifiers.create(world.to_b1[index : index + 2])
        # A faulty server: every page hands out the token of the first page again.
        original = type(sim.runtime).continuation
        monkeypatch.setattr(sim.runtime, "continuation", lambda scope, _offset: original(sim.runtime, scope, 0))
        with pytest.raises(ResponseFormatError, match="repeats"):
            _ = [c async for c in client.collective_identifiers.query(start, end)]
    assert sim.counters.operations["post_collective_identifiers_query"] == 2


@pytest.mark.covers("post_collective_identifiers")
async def test_without_an_invoice_permission_403_and_with_collective_identifier_manage_allowed(world: World) -> None:
    sim = world.sim
    weak = sim.add_context(SELLER, permissions=["CredentialsRead"])
    manager = sim.add_context(SELLER, permissions=["CollectiveIdentifierManage"])
    async with client_of(sim, SELLER, weak) as client:
        with pytest.raises(ForbiddenError) as refused:
            await client.collective_identifiers.create(world.to_b1[:2])
    assert refused.value.status == 403
    async with client_of(sim, SELLER, manager) as client:
        assert len(await client.collective_identifiers.create(world.to_b1[:2])) == 35
