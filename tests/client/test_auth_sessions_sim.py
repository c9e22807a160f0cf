"""``GET /auth/sessions`` and ``authenticationMethodInfo`` on the simulator, as the 2.9.0 spec describes them.

Sorted by ``startDate`` descending (``x-sort``), ``pageSize`` 10..100 (default 10), the next page through
``x-continuation-token``; ``isCurrent`` marks the login whose token is used. ``authenticationMethodInfo`` is
``{category, code, displayName}`` with the spec's categories and ``<category>.<method>`` codes
(example: ``XadesSignature`` / ``xades.qualified-seal`` / ``Pieczęć kwalifikowana``).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from ksef_async.auth import CertificateCredentials, Credentials, KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.testing.certificates import generate_person_certificate, generate_seal_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

pytestmark = pytest.mark.anyio

CONFIG = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), sync_rate_limits=False)


async def quiet_sim(factory: Any) -> KsefSimulator:
    sim: KsefSimulator = await factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=9, rate_limits="off")
    return sim


def client_with(sim: KsefSimulator, credentials: Credentials) -> KsefClient:
    return KsefClient(sim.base_url, credentials=credentials, context=DEFAULT_NIP, config=CONFIG)


async def list_raw(
    sim: KsefSimulator, token: str, *, page_size: str | None = None, continuation: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if continuation is not None:
        headers["x-continuation-token"] = continuation
    params = {"pageSize": page_size} if page_size is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(sim.base_url + "/auth/sessions", headers=headers, params=params) as resp,
    ):
        return resp.status, await resp.json()


async def test_sessions_are_newest_first_and_paged_by_continuation_token(ksef_simulator_factory: Any) -> None:
    sim = await quiet_sim(ksef_simulator_factory)
    references: list[str] = []
    async with client_with(sim, KsefTokenCredentials(DEFAULT_TOKEN)) as client:
        for _ in range(12):
            await client.login()
            assert client.authenticator.reference_number is not None
            references.append(client.authenticator.reference_number)
            sim.clock.advance(5)
        items = [item async for item in client.auth.sessions()]
        token, _ = await client.authenticator.access_token()

        # Newest first over every page; the login in use is the only current one.
        assert [i.reference_number for i in items] == references[::-1]
        starts = [i.start_date for i in items]
        assert starts == sorted(starts, reverse=True)
        assert len(set(starts)) == len(starts)
        assert [i.reference_number for i in items if i.is_current] == [references[-1]]

        # Default page size 10; the continuation token leads to the rest.
        status, first = await list_raw(sim, token)
        assert status == 200
        assert [i["referenceNumber"] for i in first["items"]] == references[::-1][:10]
        assert first["continuationToken"]
        # A login made while paging does not shift the next page.
        await client.login()
        status, second = await list_raw(sim, token, continuation=first["continuationToken"])
        assert status == 200
        assert [i["referenceNumber"] for i in second["items"]] == references[::-1][10:]
        assert second["continuationToken"] is None
        assert [i["isCurrent"] for i in second["items"]] == [False, False]
        assert [i["referenceNumber"] for i in first["items"] if i["isCurrent"]] == [references[-1]]

        status, whole = await list_raw(sim, token, page_size="100")
        assert status == 200
        assert len(whole["items"]) == 13
        assert whole["continuationToken"] is None
        assert whole["items"][0]["referenceNumber"] == client.authenticator.reference_number


@pytest.mark.parametrize("page_size", ["9", "101", "0", "ten"])
async def test_page_size_outside_10_to_100_is_refused(ksef_simulator_factory: Any, page_size: str) -> None:
    sim = await quiet_sim(ksef_simulator_factory)
    async with client_with(sim, KsefTokenCredentials(DEFAULT_TOKEN)) as client:
        token, _ = await client.authenticator.access_token()
    status, body = await list_raw(sim, token, page_size=page_size)
    assert status == 400
    assert body["exception"]["exceptionDetailList"][0]["exceptionCode"] == 21405


async def test_a_foreign_or_bad_continuation_token_is_21418(ksef_simulator_factory: Any) -> None:
    sim = await quiet_sim(ksef_simulator_factory)
    async with client_with(sim, KsefTokenCredentials(DEFAULT_TOKEN)) as client:
        token, _ = await client.authenticator.access_token()
    for bad in ("garbage", sim.runtime.continuation("auth:('Nip', '0000000000')", 1)):
        status, body = await list_raw(sim, token, continuation=bad)
        assert status == 400
        assert body["exception"]["exceptionDetailList"][0]["exceptionCode"] == 21418


async def method_info_of(sim: KsefSimulator, credentials: Credentials) -> tuple[Any, Any]:
    async with client_with(sim, credentials) as client:
        await client.login()
        (item,) = [i async for i in client.auth.sessions() if i.is_current]
    return item.authentication_method, item.authentication_method_info


async def test_token_login_method_info(ksef_simulator_factory: Any) -> None:
    sim = await quiet_sim(ksef_simulator_factory)
    method, info = await method_info_of(sim, KsefTokenCredentials(DEFAULT_TOKEN))
    assert method == "Token"
    assert (info.category, info.code, info.display_name) == ("Token", "token.ksef", "Token KSeF")


async def test_xades_seal_login_method_info(ksef_simulator_factory: Any) -> None:
    sim = await quiet_sim(ksef_simulator_factory)
    seal = generate_seal_certificate(organization_name="Firma", nip=DEFAULT_NIP)
    method, info = await method_info_of(sim, CertificateCredentials.from_pem(seal.cert_pem, seal.key_pem()))
    assert method == "QualifiedSeal"
    assert (info.category, info.code, info.display_name) == (
        "XadesSignature",
        "xades.qualified-seal",
        "Pieczęć kwalifikowana",
    )


async def test_xades_personal_certificate_login_method_info(ksef_simulator_factory: Any) -> None:
    sim = await quiet_sim(ksef_simulator_factory)
    person = generate_person_certificate(given_name="Jan", surname="Kowalski", nip=DEFAULT_NIP)
    method, info = await method_info_of(sim, CertificateCredentials.from_pem(person.cert_pem, person.key_pem()))
    assert method == "QualifiedSignature"
    assert (info.category, info.code, info.display_name) == (
        "XadesSignature",
        "xades.qualified-signature",
        "Podpis kwalifikowany",
    )


async def test_xades_ksef_certificate_login_method_info(ksef_simulator_factory: Any) -> None:
    sim = await quiet_sim(ksef_simulator_factory)
    person = generate_person_certificate(given_name="Jan", surname="Kowalski", nip=DEFAULT_NIP)
    async with client_with(sim, CertificateCredentials.from_pem(person.cert_pem, person.key_pem())) as owner:
        enrolled = await owner.certificates.enroll("Method info cert")
    cert_pem = enrolled.certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = enrolled.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    method, info = await method_info_of(sim, CertificateCredentials.from_pem(cert_pem, key_pem))
    assert method == "InternalCertificate"
    assert (info.category, info.code, info.display_name) == (
        "XadesSignature",
        "xades.ksef-certificate",
        "Certyfikat KSeF",
    )
