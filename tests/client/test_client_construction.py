"""`KsefClient` builds its resources and authenticator at construction; calls before ``open`` are refused."""

from __future__ import annotations

import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import KsefClient
from ksef_async.errors import ConfigurationError
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

pytestmark = pytest.mark.anyio

RESOURCES = (
    "auth", "security", "sessions", "online", "batch", "invoices", "retrieval", "limits", "rate_limits",
    "permissions", "tokens", "certificates", "peppol", "testdata", "collective_identifiers",
)  # fmt: skip


async def test_resources_exist_before_open_and_refuse_calls_until_then() -> None:
    client = KsefClient("http://127.0.0.1:9/v2", credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP)
    for name in RESOURCES:
        assert getattr(client, name) is not None  # no AttributeError before open
    with pytest.raises(ConfigurationError, match="not open"):
        await client.security.public_key_certificates()
    with pytest.raises(ConfigurationError, match="not open"):
        await client.sessions.status("20260101-SB-0000000000-0000000000-00")  # needs a login: refused first
    assert not client.authenticator.logged_in
    assert not hasattr(client, "transports")


async def test_the_authenticator_is_the_token_source_given_to_the_transport() -> None:
    client = KsefClient("http://127.0.0.1:9/v2", credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP)
    api, public, _storage = client._transports
    assert api.tokens is client.authenticator
    assert public.tokens is None  # authentication calls carry their own bearer
    anonymous = KsefClient("http://127.0.0.1:9/v2")
    assert anonymous._transports[0].tokens is None
    with pytest.raises(ConfigurationError, match="no credentials"):
        _ = anonymous.authenticator


async def test_a_closed_client_refuses_calls_and_can_be_opened_again(ksef_simulator: KsefSimulator) -> None:
    client = KsefClient(ksef_simulator.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP)
    async with client:
        first = await client.security.public_key_certificates()
    with pytest.raises(ConfigurationError, match="not open"):
        await client.limits.context()
    async with client:
        limits = await client.limits.context()  # the same authenticator logs in (or reuses its tokens)
    assert first
    assert limits.batch_session.max_invoices >= 1


def test_a_bare_token_string_as_credentials_is_refused_with_what_to_pass() -> None:
    with pytest.raises(ConfigurationError, match=r"KsefTokenCredentials\(token\).*not str") as info:
        KsefClient("http://127.0.0.1:9/v2", credentials=DEFAULT_TOKEN, context=DEFAULT_NIP)  # type: ignore[arg-type]
    assert DEFAULT_TOKEN not in str(info.value)  # the secret is not echoed
