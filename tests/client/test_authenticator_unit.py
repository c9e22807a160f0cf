"""The Authenticator alone, over fake resources: retries of an ambiguous login, refresh fallbacks, failures."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ksef_async.auth import Authenticator, KsefTokenCredentials
from ksef_async.core.crypto import KEY_USAGE_TOKEN, MfPublicKey, rsa_oaep_decrypt
from ksef_async.core.polling import Backoff
from ksef_async.errors import AmbiguousRequestError, ApiErrorDetail, AuthenticationFailedError, BadRequestError
from ksef_async.models import (
    AuthenticationChallengeResponse,
    AuthenticationInitResponse,
    AuthenticationMethodInfo,
    AuthenticationOperationStatusResponse,
    AuthenticationTokenRefreshResponse,
    AuthenticationTokensResponse,
    StatusInfo,
    TokenInfo,
)
from ksef_async.testing.certificates import generate_seal_certificate
from ksef_async.xml.auth_request import ContextIdentifier

pytestmark = pytest.mark.anyio

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
KEY = generate_seal_certificate(organization_name="MF", nip="5265877635")


def _token(name: str, seconds: float) -> TokenInfo:
    return TokenInfo(token=name, valid_until=NOW + dt.timedelta(seconds=seconds))


class FakeAuth:
    """Scripted /auth operations; ``start_failures`` are raised by the first ksef-token calls."""

    def __init__(self, *, start_failures: list[Exception] | None = None, codes: list[int] | None = None) -> None:
        self.start_failures = list(start_failures or [])
        self.codes = list(codes or [200])
        self.calls: list[str] = []
        self.plaintexts: list[str] = []
        self.refresh_error: Exception | None = None
        self.issued = 0

    async def challenge(self) -> AuthenticationChallengeResponse:
        self.calls.append("challenge")
        return AuthenticationChallengeResponse(
            challenge="20250514-CR-226FB7B000-3ACF9BE4C0-10",
            timestamp=NOW,
            timestamp_ms=1_700_000_000_123,
            client_ip="::1",
        )

    async def ksef_token(self, request: Any) -> AuthenticationInitResponse:
        self.calls.append("ksef_token")
        self.plaintexts.append(rsa_oaep_decrypt(KEY.key, request.encrypted_token).decode())  # type: ignore[arg-type]
        if self.start_failures:
            raise self.start_failures.pop(0)
        return AuthenticationInitResponse(reference_number="REF", authentication_token=_token("op", 2700))

    async def status(self, reference: str, token: str) -> AuthenticationOperationStatusResponse:
        self.calls.append("status")
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        return AuthenticationOperationStatusResponse(
            start_date=NOW,
            authentication_method_info=AuthenticationMethodInfo(category="Token", code="token", display_name="Token"),
            status=StatusInfo(code=code, description=f"code {code}", details=("why",) if code >= 300 else None),
        )

    async def redeem(self, token: str) -> AuthenticationTokensResponse:
        self.calls.append("redeem")
        self.issued += 1
        return AuthenticationTokensResponse(
            access_token=_token(f"access-{self.issued}", 900), refresh_token=_token("refresh", 7 * 86400)
        )

    async def refresh(self, token: str) -> AuthenticationTokenRefreshResponse:
        self.calls.append("refresh")
        await asyncio.sleep(0.01)
        if self.refresh_error is not None:
            raise self.refresh_error
        self.issued += 1
        return AuthenticationTokenRefreshResponse(access_token=_token(f"access-{self.issued}", 1800))


class FakeSecurity:
    async def public_key(self, usage: str, *, refresh: bool = False) -> MfPublicKey:
        der = KEY.certificate.public_bytes(serialization.Encoding.DER)
        return MfPublicKey(der, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1), (KEY_USAGE_TOKEN,), None)


def authenticator(auth: FakeAuth, clock: list[float]) -> Authenticator:
    return Authenticator(
        KsefTokenCredentials("my-ksef-token"),
        ContextIdentifier("Nip", "5265877635"),
        auth,  # type: ignore[arg-type]
        FakeSecurity(),  # type: ignore[arg-type]
        clock=lambda: clock[0],
        poll_backoff=Backoff(initial=0.001, maximum=0.002),
    )


async def test_login_sends_token_pipe_timestamp_and_polls_until_done() -> None:
    auth = FakeAuth(codes=[100, 100, 200])
    authn = authenticator(auth, [NOW.timestamp()])
    token, generation = await authn.access_token()
    assert token == "access-1"
    assert auth.plaintexts == ["my-ksef-token|1700000000123"]
    assert auth.calls == ["challenge", "ksef_token", "status", "status", "status", "redeem"]
    assert generation == 1


async def test_an_ambiguous_login_start_is_retried_once_from_a_new_challenge() -> None:
    auth = FakeAuth(start_failures=[AmbiguousRequestError("lost")])
    await authenticator(auth, [NOW.timestamp()]).login()
    assert auth.calls.count("challenge") == 2
    assert auth.calls.count("redeem") == 1


async def test_failure_code_raises_with_code_details_and_reference() -> None:
    auth = FakeAuth(codes=[100, 460])
    with pytest.raises(AuthenticationFailedError) as info:
        await authenticator(auth, [NOW.timestamp()]).login()
    assert (info.value.code, info.value.details, info.value.reference_number) == (460, ["why"], "REF")
    assert "redeem" not in auth.calls


async def test_concurrent_expiry_causes_one_refresh() -> None:
    auth = FakeAuth()
    clock = [NOW.timestamp()]
    authn = authenticator(auth, clock)
    await authn.login()
    clock[0] += 880  # inside the 60 s margin
    tokens = await asyncio.gather(*(authn.access_token() for _ in range(100)))
    assert {t for t, _ in tokens} == {"access-2"}
    assert auth.calls.count("refresh") == 1


async def test_refused_refresh_falls_back_to_login() -> None:
    auth = FakeAuth()
    clock = [NOW.timestamp()]
    authn = authenticator(auth, clock)
    await authn.login()
    auth.refresh_error = BadRequestError(400, [ApiErrorDetail(21301, "no authorization")])
    clock[0] += 880
    token, _ = await authn.access_token()
    assert token == "access-2"
    assert auth.calls.count("redeem") == 2


async def test_other_refresh_errors_are_raised() -> None:
    auth = FakeAuth()
    clock = [NOW.timestamp()]
    authn = authenticator(auth, clock)
    await authn.login()
    auth.refresh_error = BadRequestError(400, [ApiErrorDetail(21405, "validation")])
    clock[0] += 880
    with pytest.raises(BadRequestError):
        await authn.access_token()


async def test_logout_uses_the_refresh_token_once_the_access_token_expired() -> None:
    auth = FakeAuth()
    revoked: list[str | None] = []

    async def revoke_current(*, token: str | None = None) -> None:
        revoked.append(token)

    auth.revoke_current = revoke_current  # type: ignore[attr-defined]
    clock = [NOW.timestamp()]
    authn = authenticator(auth, clock)
    await authn.login()
    clock[0] += 3600
    await authn.logout()
    assert revoked == ["refresh"]
    assert not authn.logged_in


async def test_repr_hides_the_token() -> None:
    authn = authenticator(FakeAuth(), [NOW.timestamp()])
    await authn.login()
    assert "my-ksef-token" not in repr(authn)
    assert "access-1" not in repr(authn)
