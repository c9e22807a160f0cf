"""Authentication against the simulator: token and XAdES logins, failures, refresh, 401 recovery, key rotation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ksef_async.auth import CertificateCredentials, KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, KEY_USAGE_TOKEN
from ksef_async.core.polling import Backoff
from ksef_async.errors import AuthenticationFailedError, ConfigurationError
from ksef_async.models import FormCode
from ksef_async.testing.certificates import generate_person_certificate, generate_seal_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.keys import MfKey

pytestmark = pytest.mark.anyio

FA3 = FormCode(system_code="FA (3)", schema_version="1-0E", value="FA")
QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))


def token_client(sim: KsefSimulator, counter: Any = None, **kwargs: object) -> KsefClient:
    return KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=QUICK,
        trace_configs=[counter.trace] if counter else None,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_token_login_redeems_and_reads_rate_limits(sim: KsefSimulator, counter: Any) -> None:
    async with token_client(sim, counter) as client:
        await client.login()
        limits = await client.limits.context()
        assert client.authenticator.reference_number is not None
    assert limits.online_session.max_invoices > 0
    assert counter["POST /auth/ksef-token"] == 1
    assert counter["POST /auth/token/redeem"] == 1
    assert counter["GET /rate-limits"] == 1


async def test_first_call_logs_in_by_itself(sim: KsefSimulator, counter: Any) -> None:
    async with token_client(sim, counter) as client:
        await client.limits.context()
    assert counter["POST /auth/token/redeem"] == 1


async def test_wrong_token_fails_with_the_status_code_and_details(sim: KsefSimulator) -> None:
    async with KsefClient(
        sim.base_url, credentials=KsefTokenCredentials("not-a-token"), context=DEFAULT_NIP, config=QUICK
    ) as client:
        with pytest.raises(AuthenticationFailedError) as info:
            await client.login()
    assert info.value.code == 450
    assert info.value.details
    assert info.value.reference_number is not None


@pytest.mark.parametrize("algorithm", ["rsa", "ec"])
async def test_xades_login_with_pem(sim: KsefSimulator, algorithm: str, counter: Any) -> None:
    cert = generate_person_certificate(given_name="Jan", surname="Kowalski", nip=DEFAULT_NIP, algorithm=algorithm)  # type: ignore[arg-type]
    credentials = CertificateCredentials.from_pem(cert.cert_pem, cert.key_pem(b"pw"), b"pw")
    async with KsefClient(
        sim.base_url, credentials=credentials, context=DEFAULT_NIP, config=QUICK, trace_configs=[counter.trace]
    ) as client:
        await client.limits.context()
    assert counter["POST /auth/xades-signature"] == 1
    assert counter["POST /auth/ksef-token"] == 0


@pytest.mark.parametrize("algorithm", ["rsa", "ec"])
async def test_xades_login_with_pkcs12_seal(sim: KsefSimulator, algorithm: str) -> None:
    cert = generate_seal_certificate(organization_name="Firma", nip=DEFAULT_NIP, algorithm=algorithm)  # type: ignore[arg-type]
    credentials = CertificateCredentials.from_pkcs12(cert.pkcs12(b"secret"), b"secret")
    async with KsefClient(sim.base_url, credentials=credentials, context=DEFAULT_NIP, config=QUICK) as client:
        await client.login()
        assert client.authenticator.logged_in


async def test_xades_fingerprint_without_permissions_is_refused(sim: KsefSimulator) -> None:
    cert = generate_person_certificate(given_name="Ewa", surname="Nowak", nip="1111111111")
    credentials = CertificateCredentials.from_pem(
        cert.cert_pem, cert.key_pem(), subject_identifier_type="certificateFingerprint"
    )
    async with KsefClient(sim.base_url, credentials=credentials, context=DEFAULT_NIP, config=QUICK) as client:
        with pytest.raises(AuthenticationFailedError) as info:
            await client.login()
    assert info.value.code == 415


async def test_concurrent_calls_share_one_refresh(sim: KsefSimulator, counter: Any) -> None:
    now = [time.time()]
    async with token_client(sim, counter, clock=lambda: now[0]) as client:
        await client.login()
        now[0] += 900  # past validUntil - margin: every caller now wants a fresh token
        sim.clock.advance(900)  # the server's clock moves too, so the refreshed token is valid for both
        tokens = await asyncio.gather(*(client.authenticator.access_token() for _ in range(50)))
        await asyncio.gather(*(client.limits.context() for _ in range(5)))
    assert len({token for token, _ in tokens}) == 1
    assert counter["POST /auth/token/refresh"] == 1
    assert counter["POST /auth/ksef-token"] == 1


async def test_401_triggers_one_refresh_and_a_retry(sim: KsefSimulator, counter: Any) -> None:
    async with token_client(sim, counter) as client:
        await client.login()
        sim.clock.advance(1000)  # KSeF's view: the access token expired; the client's clock disagrees
        limits = await client.limits.context()
    assert limits.online_session.max_invoices > 0
    assert counter["POST /auth/token/refresh"] == 1
    assert counter["GET /limits/context"] == 2


async def test_expired_refresh_token_falls_back_to_a_new_login(sim: KsefSimulator, counter: Any) -> None:
    async with token_client(sim, counter) as client:
        await client.login()
        sim.clock.advance(8 * 24 * 3600)  # both tokens expired on the server
        await client.limits.context()
    assert counter["POST /auth/ksef-token"] == 2


def rotate_keys(sim: KsefSimulator) -> None:
    """Emergency rotation: every MF key replaced; the old publicKeyIds are rejected at once (21470)."""
    ring = sim.runtime.keys
    now = sim.clock.now_dt()
    ring.keys = [MfKey.generate(usage, bits=2048, now=now) for usage in (KEY_USAGE_TOKEN, KEY_USAGE_SYMMETRIC)]


async def test_key_rotation_21470_refetches_keys_and_retries_once(sim: KsefSimulator, counter: Any) -> None:
    async with token_client(sim, counter) as client:
        await client.login()
        assert counter["GET /security/public-key-certificates"] == 1
        rotate_keys(sim)
        session = await client.online.open(FA3)  # old symmetric key id -> 21470 -> refetch -> retry
        assert session.reference_number
        assert counter["POST /sessions/online"] == 2
        assert counter["GET /security/public-key-certificates"] == 2
        rotate_keys(sim)
        await client.login()  # old token key id -> 21470 -> refetch -> retry
        assert counter["POST /auth/ksef-token"] == 3
        assert counter["GET /security/public-key-certificates"] == 3
        await client.online.close(session.reference_number)


async def test_auth_sessions_listing_and_logout(sim: KsefSimulator, counter: Any) -> None:
    async with token_client(sim, counter) as client:
        await client.login()
        await client.login()
        items = [item async for item in client.auth.sessions()]
        current = [i for i in items if i.is_current]
        others = [i for i in items if not i.is_current]
        assert len(current) == 1
        assert others
        await client.auth.revoke(others[0].reference_number)
        await client.logout()
        assert not client.authenticator.logged_in
    assert counter["DELETE /auth/sessions/current"] == 1


async def test_credentials_need_a_context() -> None:
    with pytest.raises(ConfigurationError, match="context"):
        KsefClient("http://127.0.0.1:1/v2", credentials=KsefTokenCredentials("x"))
    with pytest.raises(ConfigurationError, match="context"):
        KsefClient("http://127.0.0.1:1/v2", context="123")
