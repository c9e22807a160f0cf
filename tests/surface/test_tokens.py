"""KSeF tokens through ``client.tokens`` against the simulator: the create / log in / revoke / refused lifecycle."""

from __future__ import annotations

import pytest

from ksef_async.errors import AuthenticationFailedError, ForbiddenError
from ksef_async.models import AuthenticationTokenStatus, FormCode, TokenPermissionType
from ksef_async.testing.certificates import TestCertificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP
from ksef_async.testing.simulator import KsefSimulator

from .conftest import cert_client, token_client

pytestmark = pytest.mark.anyio

FA3 = FormCode(system_code="FA (3)", schema_version="1-0E", value="FA")


@pytest.mark.covers(
    "post_tokens",
    "get_tokens",
    "get_tokens_by_reference_number",
    "delete_tokens_by_reference_number",
    "post_auth_xades_signature",
    "post_auth_ksef_token",
)
async def test_token_created_after_xades_login_authenticates_until_revoked(
    sim: KsefSimulator, owner_cert: TestCertificate
) -> None:
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        created = await owner.tokens.create([TokenPermissionType.INVOICE_READ], "read-only token for the robot")
        assert created.token not in repr(created)

        # The new token logs in, with exactly the permission it was given: reading works, sending does not.
        async with token_client(sim, created.token) as robot:
            await robot.login()
            assert robot.authenticator.logged_in
            with pytest.raises(ForbiddenError) as refused:
                await robot.online.open(FA3)
            assert refused.value.status == 403

        status = await owner.tokens.status(created.reference_number)
        assert status.status == AuthenticationTokenStatus.ACTIVE
        assert tuple(status.requested_permissions) == (TokenPermissionType.INVOICE_READ,)
        assert status.last_use_date is not None
        listed = [t async for t in owner.tokens.list(statuses=["Active"], description="robot")]
        assert [t.reference_number for t in listed] == [created.reference_number]

        await owner.tokens.revoke(created.reference_number)
        assert (await owner.tokens.status(created.reference_number)).status == AuthenticationTokenStatus.REVOKED
        assert [t async for t in owner.tokens.list(statuses=["Active"], description="robot")] == []

    async with token_client(sim, created.token) as robot:
        with pytest.raises(AuthenticationFailedError) as failed:
            await robot.login()
    assert failed.value.code == 450


@pytest.mark.covers("post_tokens")
async def test_post_tokens_is_refused_after_a_token_login(sim: KsefSimulator) -> None:
    async with token_client(sim) as client:
        with pytest.raises(ForbiddenError) as refused:
            await client.tokens.create(["InvoiceRead"], "should not be created")
    assert refused.value.status == 403
    assert refused.value.body is not None
    assert refused.value.body["reasonCode"] == "auth-method-not-allowed"


@pytest.mark.covers("get_tokens")
async def test_get_tokens_follows_continuation_tokens_and_filters(
    sim: KsefSimulator, owner_cert: TestCertificate
) -> None:
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        references = [
            (await owner.tokens.create(["InvoiceWrite"], f"batch token number {i:02}")).reference_number
            for i in range(12)
        ]
        every = [t async for t in owner.tokens.list(page_size=10)]
        assert sim.counters.operations["get_tokens"] == 2  # 13 tokens (12 + the seeded one) in pages of 10
        assert set(references) <= {t.reference_number for t in every}
        assert len(every) == 13
        by_author = [t async for t in owner.tokens.list(author_identifier=DEFAULT_NIP, author_identifier_type="Nip")]
        assert {t.reference_number for t in by_author} == {t.reference_number for t in every}
        by_text = [t async for t in owner.tokens.list(description="number 07")]
        assert [t.reference_number for t in by_text] == [references[7]]
        assert [t async for t in owner.tokens.list(author_identifier="99999", author_identifier_type="Pesel")] == []
