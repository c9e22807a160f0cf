"""``/testdata/*``, limits, rate limits, auth sessions and Peppol through the client, against the simulator."""

from __future__ import annotations

import datetime as dt

import pytest

from ksef_async import models
from ksef_async.client import KsefClient
from ksef_async.errors import AuthenticationFailedError, BadRequestError, ConfigurationError
from ksef_async.models import (
    AttachmentPermissionGrantRequest,
    AttachmentPermissionRevokeRequest,
    BatchSessionContextLimitsOverride,
    BlockContextAuthenticationRequest,
    CollectiveIdentifierContextLimitsOverride,
    OnlineSessionContextLimitsOverride,
    PersonCreateRequest,
    PersonRemoveRequest,
    SetRateLimitsRequest,
    SetSessionLimitsRequest,
    SubjectCreateRequest,
    SubjectRemoveRequest,
    Subunit,
    UnblockContextAuthenticationRequest,
)
from ksef_async.models.converter import structure, unstructure
from ksef_async.testing.certificates import generate_person_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP
from ksef_async.testing.simulator import KsefSimulator

from .conftest import QUICK, cert_client, token_client

pytestmark = pytest.mark.anyio

OTHER_NIP = "7762811692"
PESEL = "88102341294"


def public_client(sim: KsefSimulator) -> KsefClient:
    """A client without credentials: the public ``/testdata`` operations and Peppol need no login."""
    return KsefClient(sim.base_url, config=QUICK)


async def _login_code(client: KsefClient) -> int:
    try:
        await client.login()
    except AuthenticationFailedError as failed:
        return failed.code
    return 200


@pytest.mark.covers("post_testdata_subject", "post_testdata_subject_remove")
async def test_post_testdata_subject_and_remove(sim: KsefSimulator) -> None:
    request = SubjectCreateRequest(
        subject_nip=OTHER_NIP,
        subject_type="VatGroup",
        description="VAT group for tests",
        subunits=(Subunit(subject_nip="3755747347", description="member of the group"),),
    )
    async with public_client(sim) as client:
        await client.testdata.create_subject(request)
        with pytest.raises(BadRequestError) as exists:
            await client.testdata.create_subject(request)
        assert sim.state.subjects[OTHER_NIP] == "VatGroup"
        await client.testdata.remove_subject(SubjectRemoveRequest(subject_nip=OTHER_NIP))
        assert OTHER_NIP not in sim.state.subjects
        await client.testdata.create_subject(request)  # removed: it can be created again
    assert exists.value.has_code(30001)


@pytest.mark.covers("post_testdata_person", "post_testdata_person_remove")
async def test_post_testdata_person_owns_its_nip_until_removed(sim: KsefSimulator) -> None:
    cert = generate_person_certificate(given_name="Jan", surname="Nowak", pesel=PESEL, algorithm="ec")
    async with public_client(sim) as client:
        await client.testdata.create_person(
            PersonCreateRequest(nip=OTHER_NIP, pesel=PESEL, is_bailiff=False, description="owner of the NIP")
        )
    async with cert_client(sim, cert.cert_pem, cert.key_pem(), context=OTHER_NIP) as person:
        assert await _login_code(person) == 200
    async with public_client(sim) as client:
        await client.testdata.remove_person(PersonRemoveRequest(nip=OTHER_NIP))
    async with cert_client(sim, cert.cert_pem, cert.key_pem(), context=OTHER_NIP) as person:
        assert await _login_code(person) == 415


@pytest.mark.covers("post_testdata_permissions", "post_testdata_permissions_revoke")
async def test_post_testdata_permissions_grant_and_revoke_a_fingerprint(sim: KsefSimulator) -> None:
    cert = generate_person_certificate(given_name="Ewa", surname="Kot", nip="1111111111", algorithm="ec")
    context = models.TestDataContextIdentifier(type="Nip", value=DEFAULT_NIP)
    who = models.TestDataAuthorizedIdentifier(type="Fingerprint", value=cert.fingerprint)
    async with public_client(sim) as client:
        await client.testdata.grant_permissions(
            models.TestDataPermissionsGrantRequest(
                context_identifier=context,
                authorized_identifier=who,
                permissions=(models.TestDataPermission(permission_type="InvoiceRead", description="read invoices"),),
            )
        )
    async with cert_client(sim, cert.cert_pem, cert.key_pem(), fingerprint=True) as reader:
        assert await _login_code(reader) == 200
    async with public_client(sim) as client:
        await client.testdata.revoke_permissions(
            models.TestDataPermissionsRevokeRequest(context_identifier=context, authorized_identifier=who)
        )
    async with cert_client(sim, cert.cert_pem, cert.key_pem(), fingerprint=True) as reader:
        assert await _login_code(reader) == 415


@pytest.mark.covers("post_testdata_attachment", "post_testdata_attachment_revoke")
async def test_post_testdata_attachment_and_revoke(sim: KsefSimulator) -> None:
    async with public_client(sim) as client:
        await client.testdata.allow_attachments(AttachmentPermissionGrantRequest(nip=DEFAULT_NIP))
        assert DEFAULT_NIP in sim.state.attachments_allowed
        await client.testdata.revoke_attachments(
            AttachmentPermissionRevokeRequest(nip=DEFAULT_NIP, expected_end_date=dt.date(2030, 1, 1))
        )
        assert DEFAULT_NIP not in sim.state.attachments_allowed


@pytest.mark.covers("post_testdata_context_block", "post_testdata_context_unblock")
async def test_post_testdata_context_block_and_unblock(sim: KsefSimulator) -> None:
    ident = models.TestDataAuthenticationContextIdentifier(type="Nip", value=DEFAULT_NIP)
    async with public_client(sim) as client:
        await client.testdata.block_context(BlockContextAuthenticationRequest(context_identifier=ident))
    async with token_client(sim) as blocked:
        assert await _login_code(blocked) == 480
    async with public_client(sim) as client:
        await client.testdata.unblock_context(UnblockContextAuthenticationRequest(context_identifier=ident))
    async with token_client(sim) as unblocked:
        assert await _login_code(unblocked) == 200


@pytest.mark.covers(
    "post_testdata_limits_context_session", "delete_testdata_limits_context_session", "get_limits_context"
)
async def test_session_limits_set_and_reset(sim: KsefSimulator) -> None:
    async with token_client(sim) as client:
        defaults = await client.limits.context()
        await client.testdata.set_session_limits(
            SetSessionLimitsRequest(
                online_session=OnlineSessionContextLimitsOverride(
                    max_invoice_size_in_mb=1, max_invoice_with_attachment_size_in_mb=2, max_invoices=7
                ),
                batch_session=BatchSessionContextLimitsOverride(
                    max_invoice_size_in_mb=1, max_invoice_with_attachment_size_in_mb=2, max_invoices=9
                ),
                collective_identifier=CollectiveIdentifierContextLimitsOverride(max_invoices=11),
            )
        )
        changed = await client.limits.context()
        await client.testdata.reset_session_limits()
        reset = await client.limits.context()
    assert (changed.online_session.max_invoices, changed.batch_session.max_invoices) == (7, 9)
    assert changed.collective_identifier.max_invoices == 11
    assert defaults.collective_identifier.max_invoices == 500
    assert reset == defaults


@pytest.mark.covers(
    "post_testdata_rate_limits",
    "delete_testdata_rate_limits",
    "post_testdata_rate_limits_production",
    "get_rate_limits",
)
async def test_rate_limits_set_reset_and_production(sim: KsefSimulator) -> None:
    async with token_client(sim) as client:
        production = await client.rate_limits.get()
        wire = unstructure(production)
        wire["other"] = {"perSecond": 1, "perMinute": 2, "perHour": 3}
        await client.testdata.set_rate_limits(structure({"rateLimits": wire}, SetRateLimitsRequest))
        custom = await client.rate_limits.get()
        await client.testdata.reset_rate_limits()
        reset = await client.rate_limits.get()
        await client.testdata.set_rate_limits(structure({"rateLimits": wire}, SetRateLimitsRequest))
        await client.testdata.production_rate_limits()
        back = await client.rate_limits.get()
    assert (custom.other.per_second, custom.other.per_minute, custom.other.per_hour) == (1, 2, 3)
    assert custom.invoice_send == production.invoice_send
    assert reset == production
    assert back == production


@pytest.mark.covers("get_auth_sessions", "delete_auth_sessions_by_reference_number", "delete_auth_sessions_current")
async def test_auth_sessions_list_and_revoke(sim: KsefSimulator) -> None:
    async with token_client(sim) as first, token_client(sim) as second:
        await first.login()
        await second.login()
        listed = [s async for s in first.auth.sessions(page_size=10)]
        assert len(listed) == 2
        current = [s for s in listed if s.is_current]
        assert len(current) == 1
        other = next(s for s in listed if not s.is_current)
        await first.auth.revoke(other.reference_number)
        assert [s.reference_number async for s in first.auth.sessions()] == [current[0].reference_number]
        await first.auth.revoke_current()
        assert [s async for s in second.auth.sessions()] == []


@pytest.mark.covers("get_peppol_query")
async def test_get_peppol_query_pages_newest_first(sim: KsefSimulator) -> None:
    start = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
    for i in range(12):
        sim.add_peppol_provider(f"PPL{i:06}", f"Provider {i}", start + dt.timedelta(days=i // 2))
    with pytest.raises(ConfigurationError):
        sim.add_peppol_provider("XX1", "bad id")
    async with public_client(sim) as client:
        providers = [p async for p in client.peppol.providers(page_size=10)]
    assert sim.counters.operations["get_peppol_query"] == 2
    assert len(providers) == 12
    # dateCreated descending, then id ascending among equal dates
    assert [p.id for p in providers[:4]] == ["PPL000010", "PPL000011", "PPL000008", "PPL000009"]
    assert providers[-1].id == "PPL000001"
    assert providers[0].date_created == start + dt.timedelta(days=5)
