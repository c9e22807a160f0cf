"""The client's side of API 2.9.0 over loopback: ``X-KSeF-Feature`` per client and per session (online and batch),
``publicKeyId`` of exactly 44 characters, ``ownerPermissions``, and 403 bodies without ``timestamp``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from ksef_async import send_batch
from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError, ForbiddenError, ResponseFormatError, api_error_from_response
from ksef_async.models import CurrencyCode, FormCode, InvoiceQueryDateRange, InvoiceQueryFilters
from ksef_async.online import send_online
from ksef_async.resources._features import SUBJECT_IDENTIFIER_VALIDATION, feature_headers
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.runtime import SimConfig

pytestmark = pytest.mark.anyio

OTHER_NIP = "1111111111"
BAD_NIP = "1111111112"  # OTHER_NIP with a wrong check digit
FAST = Backoff(initial=0.01, maximum=0.05)


def config(**kwargs: Any) -> ClientConfig:
    return ClientConfig(auth_poll_backoff=FAST, **kwargs)


def client_for(
    sim: KsefSimulator, cfg: ClientConfig | None = None, *, nip: str = DEFAULT_NIP, token: str = DEFAULT_TOKEN
) -> KsefClient:
    return KsefClient(sim.base_url, credentials=KsefTokenCredentials(token), context=nip, config=cfg or config())


def invoices(seed: int, buyer: str, count: int = 1) -> list[tuple[str, bytes]]:
    made = list(InvoiceFactory(DEFAULT_NIP, buyer_nip=OTHER_NIP, seed=seed).iter(count))
    return [
        (name, data.replace(f"<NIP>{OTHER_NIP}</NIP>".encode(), f"<NIP>{buyer}</NIP>".encode())) for name, data in made
    ]


def test_feature_names_are_checked_before_anything_is_sent() -> None:
    assert config(features=[SUBJECT_IDENTIFIER_VALIDATION]).features == (SUBJECT_IDENTIFIER_VALIDATION,)
    assert feature_headers(["a-b"], ["c", "a-b"]) == {"X-KSeF-Feature": "a-b, c"}
    assert feature_headers((), None) is None
    for bad in (["Upper"], ["a, b"], ["new\nline"], [""], "subject-identifier-validation"):
        with pytest.raises(ConfigurationError):
            config(features=bad)


async def test_configured_feature_is_sent_and_bad_nip_rejected_only_with_it(sim: KsefSimulator) -> None:
    async with client_for(sim) as plain_client:
        plain = await send_online(plain_client, invoices(31, BAD_NIP))
    async with client_for(sim, config(features=(SUBJECT_IDENTIFIER_VALIDATION,))) as checked_client:
        checked = await send_online(checked_client, invoices(32, BAD_NIP) + invoices(33, OTHER_NIP))
    (accepted,) = plain.outcomes
    assert accepted.accepted  # without the feature KSeF does not check the buyer's NIP
    assert sim.state.sessions[plain.sessions[0].reference_number].features == frozenset()
    assert sim.state.sessions[checked.sessions[0].reference_number].features == {SUBJECT_IDENTIFIER_VALIDATION}
    rejected, fine = checked.outcomes
    assert rejected.status_code == 450
    assert not rejected.accepted
    assert any(BAD_NIP in d and "Podmiot2" in d for d in rejected.details)
    assert fine.accepted


async def test_feature_per_session_on_send_online_and_open(sim: KsefSimulator) -> None:
    async with client_for(sim) as client:
        result = await send_online(client, invoices(34, BAD_NIP), features=[SUBJECT_IDENTIFIER_VALIDATION])
        opened = await client.online.open(
            FormCode(system_code="FA (3)", schema_version="1-0E", value="FA"), features=["some-other-feature"]
        )
        await client.online.close(opened.reference_number)
    assert result.outcomes[0].status_code == 450
    assert sim.state.sessions[opened.reference_number].features == {"some-other-feature"}


async def test_feature_on_batch_send(ksef_simulator_factory: Any, tmp_path: Path) -> None:
    # 21184 is online-only: the fault kinds that inject it must leave batch sessions alone.
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=5, rate_limits="off", faults="session-unavailable,session-down"
    )
    async with client_for(sim, config(features=("client-wide",))) as client:
        report = await send_batch(
            client,
            invoices(35, BAD_NIP) + invoices(36, OTHER_NIP),
            state_dir=tmp_path / "s",
            features=[SUBJECT_IDENTIFIER_VALIDATION],
        )
    (session,) = sim.state.sessions.values()
    assert session.features == {SUBJECT_IDENTIFIER_VALIDATION, "client-wide"}
    outcomes = sorted((e.outcome, e.error["code"] if e.error else None) for e in report.entries)
    assert outcomes == [("accepted", None), ("rejected", 450)]
    assert sim.counters.faults["session-unavailable"] == sim.counters.faults["session-down"] == 0


async def test_public_key_id_must_be_44_characters(ksef_simulator_factory: Any) -> None:
    # Not strict: the simulator is made to break the contract on purpose, as a faulty server would.
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=4, strict_contract=False
    )
    async with client_for(sim) as client:
        keys = await client.security.public_keys()
        assert all(k.public_key_id is not None and len(k.public_key_id) == 44 for k in keys)
        sim.runtime.keys.keys[0].public_key_id = "c2hvcnQ="
        with pytest.raises(ResponseFormatError) as info:
            await client.security.public_keys(refresh=True)
    assert "$[0].publicKeyId: expected exactly 44 characters" in str(info.value)


async def test_owner_permissions_are_readable(sim: KsefSimulator) -> None:
    async with client_for(sim) as client:
        owner = await client.permissions.owner_permissions()
    assert {"InvoiceWrite", "InvoiceRead", "CredentialsManage", "CollectiveIdentifierManage"} <= {str(p) for p in owner}


async def test_403_without_timestamp_is_a_forbidden_error(ksef_simulator_factory: Any) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=6, config=SimConfig(forbidden_timestamp=False)
    )
    reader = sim.add_context(OTHER_NIP, permissions=["InvoiceRead"])
    async with client_for(sim, nip=OTHER_NIP, token=reader) as client:
        with pytest.raises(ForbiddenError) as info:
            await client.online.open(FormCode(system_code="FA (3)", schema_version="1-0E", value="FA"))
    error = info.value
    assert error.status == 403
    assert error.reason_code == "missing-permissions"
    assert "InvoiceWrite" in error.security["requiredAnyOfPermissions"]
    assert error.timestamp is None
    assert error.body is not None
    assert "timestamp" not in error.body


def test_403_parsing_with_and_without_timestamp() -> None:
    body = {"title": "Forbidden", "status": 403, "detail": "Brak uprawnień.", "reasonCode": "ip-not-allowed"}
    bare = api_error_from_response(403, body)
    stamped = api_error_from_response(403, body | {"timestamp": "2026-10-20T10:00:00+00:00"})
    assert isinstance(bare, ForbiddenError)
    assert bare.timestamp is None
    assert bare.reason_code == "ip-not-allowed"
    assert "Brak uprawnień." in str(bare)
    assert isinstance(stamped, ForbiddenError)
    assert stamped.timestamp == "2026-10-20T10:00:00+00:00"


NEW_CURRENCIES = ("CNH", "VED", "XTS", "ZWG", "SLE")


async def test_new_currency_codes_are_accepted_in_queries(sim: KsefSimulator) -> None:
    assert {c.value for c in CurrencyCode} >= set(NEW_CURRENCIES)
    now = sim.clock.now_dt()
    filters = InvoiceQueryFilters(
        subject_type="Subject1",
        date_range=InvoiceQueryDateRange(date_type="Issue", from_=now - dt.timedelta(days=10), to=now),
        currency_codes=NEW_CURRENCIES,
    )
    async with client_for(sim) as client:
        page = await client.retrieval.query_metadata_page(filters, page_size=10)
    assert page.invoices == ()  # strict mode: the request passed the 2.9.0 contract, the filter matched nothing
