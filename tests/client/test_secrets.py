"""No secret of a full flow reaches a log record (at DEBUG), a repr or an exception message."""

from __future__ import annotations

import logging
import time
import urllib.parse

import pytest

from ksef_async.auth import CertificateCredentials, KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.errors import AuthenticationFailedError
from ksef_async.models import FormCode
from ksef_async.online import send_online
from ksef_async.testing.certificates import generate_person_certificate
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

pytestmark = pytest.mark.anyio

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))


def _forms(secret: str) -> set[str]:
    """The secret and the ways it may be spelled in a URL or a header."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


async def test_full_flow_leaks_no_secret(sim: KsefSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: set[str] = {DEFAULT_TOKEN}
    reprs: list[str] = []
    errors: list[str] = []
    now = [time.time()]
    credentials = KsefTokenCredentials(DEFAULT_TOKEN)
    async with KsefClient(
        sim.base_url, credentials=credentials, context=DEFAULT_NIP, config=QUICK, clock=lambda: now[0]
    ) as client:
        await client.login()
        state = client.authenticator._state
        assert state.access is not None
        assert state.refresh is not None
        secrets |= {state.access.value, state.refresh.value}
        now[0] += 900  # force a refresh
        sim.clock.advance(900)
        result = await send_online(client, list(InvoiceFactory(DEFAULT_NIP, seed=11).iter(2)))
        assert state.access is not None
        secrets.add(state.access.value)
        sim.clock.advance(1000)  # force a 401 and its refresh
        ref = result.sessions[0].reference_number
        status = await client.sessions.status(ref)
        assert state.access is not None
        secrets.add(state.access.value)
        assert status.upo is not None
        for page in status.upo.pages:
            sig = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.download_url).query))["sig"]
            secrets.add(sig)
            await client.sessions.download_upo(page.download_url)
        session = await client.online.open(FormCode(system_code="FA (3)", schema_version="1-0E", value="FA"))
        reprs += [repr(client), repr(credentials), repr(result), repr(client.authenticator), repr(session)]
        # The response models themselves: the status holds the UPO pages' pre-signed URLs.
        reprs += [repr(status), *(repr(page) for page in status.upo.pages)]
        reprs += [repr(o) for o in result.outcomes] + [repr(s) for s in result.sessions]
        await client.online.close(session.reference_number)
        refreshed = await client.auth.refresh(state.refresh.value)  # a token response model, printed whole
        secrets.add(refreshed.access_token.token)
        reprs.append(repr(refreshed))
        await client.logout()
    async with KsefClient(
        sim.base_url, credentials=KsefTokenCredentials("wrong-" + DEFAULT_TOKEN), context=DEFAULT_NIP, config=QUICK
    ) as failing:
        with pytest.raises(AuthenticationFailedError) as info:
            await failing.login()
        errors.append(str(info.value))
        reprs.append(repr(failing))
    cert = generate_person_certificate(given_name="Jan", surname="Kowalski", nip=DEFAULT_NIP)
    reprs.append(repr(CertificateCredentials.from_pem(cert.cert_pem, cert.key_pem())))
    key_body = cert.key_pem().decode().splitlines()[1]
    secrets.add(key_body)

    assert len(secrets) >= 6
    logged = "\n".join([r.getMessage() for r in caplog.records] + [repr(r.__dict__) for r in caplog.records])
    assert any(r.name.startswith("ksef_async.transport") for r in caplog.records)  # DEBUG records were captured
    for secret in secrets:
        for form in _forms(secret):
            assert form not in logged, "a secret reached a log record"
            for text in reprs + errors:
                assert form not in text, f"a secret reached a repr or message: {text[:80]}"
