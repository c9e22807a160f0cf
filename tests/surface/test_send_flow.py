"""The login, sending, status, UPO and retrieval operations called one by one through the client's resources."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
from typing import Any

import pytest

from ksef_async.client import KsefClient
from ksef_async.core.crypto import KEY_USAGE_TOKEN, SessionKey, encrypt_cbc, rsa_oaep_encrypt
from ksef_async.models import (
    AuthenticationContextIdentifier,
    BatchFileInfo,
    BatchFilePartInfo,
    FormCode,
    InitTokenAuthenticationRequest,
    InvoiceQueryDateRange,
    InvoiceQueryFilters,
)
from ksef_async.online import send_online
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

from .conftest import QUICK, token_client

pytestmark = pytest.mark.anyio

FA3 = FormCode(system_code="FA (3)", schema_version="1-0E", value="FA")


@pytest.mark.covers(
    "get_security_public_key_certificates",
    "post_auth_challenge",
    "post_auth_ksef_token",
    "get_auth_by_reference_number",
    "post_auth_token_redeem",
    "post_auth_token_refresh",
)
async def test_login_step_by_step_with_the_auth_resource(sim: KsefSimulator) -> None:
    async with KsefClient(sim.base_url, config=QUICK) as client:
        key = await client.security.public_key(KEY_USAGE_TOKEN)
        challenge = await client.auth.challenge()
        started = await client.auth.ksef_token(
            InitTokenAuthenticationRequest(
                challenge=challenge.challenge,
                context_identifier=AuthenticationContextIdentifier(type="Nip", value=DEFAULT_NIP),
                encrypted_token=rsa_oaep_encrypt(
                    key.rsa_public_key(), f"{DEFAULT_TOKEN}|{challenge.timestamp_ms}".encode()
                ),
            )
        )
        status = await client.auth.status(started.reference_number, started.authentication_token.token)
        tokens = await client.auth.redeem(started.authentication_token.token)
        refreshed = await client.auth.refresh(tokens.refresh_token.token)
    assert status.status.code == 200
    assert refreshed.access_token.token != tokens.access_token.token
    assert refreshed.access_token.valid_until >= tokens.access_token.valid_until


@pytest.mark.covers(
    "post_sessions_online",
    "post_sessions_online_invoices",
    "post_sessions_online_close",
    "get_sessions",
    "get_sessions_by_reference_number",
    "get_sessions_invoices",
    "get_sessions_invoices_failed",
    "get_sessions_invoices_by_invoice_reference_number",
    "get_sessions_upo_by_upo_reference_number",
    "get_sessions_invoices_upo",
    "get_sessions_invoices_ksef_upo",
    "post_invoices_query_metadata",
    "get_invoices_ksef_by_ksef_number",
    "post_invoices_exports",
    "get_invoices_exports_by_reference_number",
)
async def test_online_session_statuses_upo_and_retrieval(sim: KsefSimulator) -> None:
    good = list(InvoiceFactory(DEFAULT_NIP, seed=21).iter(2))
    foreign = list(InvoiceFactory("1111111111", seed=22).iter(1))  # another seller: refused
    async with token_client(sim) as client:
        result = await send_online(client, good + foreign, skip_invalid=True)
        (session,) = result.sessions
        ref = session.reference_number
        listed_sessions = [s.reference_number async for s in client.sessions.list("Online")]
        status = await client.sessions.status(ref)
        invoices = [i async for i in client.sessions.invoices(ref)]
        failed = [i async for i in client.sessions.failed_invoices(ref)]
        accepted = next(o for o in result.outcomes if o.ksef_number)
        one = await client.invoices.status(ref, accepted.reference_number or "")
        assert status.upo is not None
        session_upo = await client.sessions.upo(ref, status.upo.pages[0].reference_number)
        invoice_upo = await client.sessions.invoice_upo(ref, accepted.reference_number or "")
        by_number = await client.sessions.invoice_upo_by_ksef_number(ref, accepted.ksef_number or "")
        filters = InvoiceQueryFilters(
            subject_type="Subject1",
            date_range=InvoiceQueryDateRange(
                date_type="Invoicing",
                from_=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
                to=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
            ),
        )
        page = await client.retrieval.query_metadata_page(filters, page_size=10)
        xml = await client.retrieval.get_invoice(accepted.ksef_number or "")
        export = await client.retrieval.start_export(filters, SessionKey.generate(), only_metadata=True)
        export_status = await client.retrieval.export_status(export)
    assert ref in listed_sessions
    assert status.status.code == 200
    assert len(invoices) == 3
    (refused,) = failed
    assert refused.status.code != 200
    assert refused.ksef_number is None
    assert refused.reference_number not in {o.reference_number for o in result.outcomes if o.ksef_number}
    assert one.ksef_number == accepted.ksef_number
    assert (accepted.ksef_number or "").encode() in session_upo
    assert invoice_upo == by_number
    assert {m.ksef_number for m in page.invoices} == {o.ksef_number for o in result.outcomes if o.ksef_number}
    assert hashlib.sha256(xml).digest() in {hashlib.sha256(data).digest() for _, data in good}
    assert export_status.status.code in (100, 200)


def _zip(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.covers("post_sessions_batch", "post_sessions_batch_close")
async def test_batch_session_open_upload_close(sim: KsefSimulator) -> None:
    archive = _zip(list(InvoiceFactory(DEFAULT_NIP, seed=23).iter(3)))
    key = SessionKey.generate()
    half = len(archive) // 2
    parts = [encrypt_cbc(key, archive[:half]), encrypt_cbc(key, archive[half:])]
    batch_file = BatchFileInfo(
        file_size=len(archive),
        file_hash=hashlib.sha256(archive).digest(),
        file_parts=tuple(
            BatchFilePartInfo(ordinal_number=i + 1, file_size=len(p), file_hash=hashlib.sha256(p).digest())
            for i, p in enumerate(parts)
        ),
    )
    async with token_client(sim) as client:
        opened = await client.batch.open(FA3, batch_file, key)
        for request, body in zip(opened.part_upload_requests, parts, strict=True):
            assert await client.batch.upload_part(request, body, len(body)) in (200, 201)
        await client.batch.close(opened.reference_number)
        await sim.wait_idle()
        final: Any = await client.sessions.wait_until_processed(opened.reference_number)
    assert final.status.code == 200
    assert final.successful_invoice_count == 3
