"""Credentials and the `Authenticator`: login (KSeF token or XAdES), token refresh (single-flight), logout.

The flow (official docs ``uwierzytelnianie.md``):
``POST /auth/challenge`` → ``POST /auth/ksef-token`` or ``POST /auth/xades-signature`` →
poll ``GET /auth/{referenceNumber}`` with the authentication token until a final code → ``POST /auth/token/redeem``
→ use the access token, refresh it with ``POST /auth/token/refresh`` before ``validUntil``. The decisions (use,
refresh, log in again, what a status code means) live in `ksef_async.core.auth_flow`; this module does the I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.auth_flow import AuthStatus, Token, TokenAction, TokenState, classify_auth_status
from ksef_async.core.codes import ExceptionCode
from ksef_async.core.crypto import KEY_USAGE_TOKEN, MfPublicKey, b64decode, rsa_oaep_encrypt
from ksef_async.core.polling import Backoff
from ksef_async.errors import (
    AmbiguousRequestError,
    ApiError,
    AuthenticationFailedError,
    BadRequestError,
    ConfigurationError,
    UnauthorizedError,
)
from ksef_async.models import AllowedIps as ApiAllowedIps
from ksef_async.models import (
    AuthenticationContextIdentifier,
    AuthenticationInitResponse,
    AuthenticationOperationStatusResponse,
    AuthorizationPolicy,
    InitTokenAuthenticationRequest,
)
from ksef_async.resources._base import poll_until
from ksef_async.resources._keys import with_key_rotation
from ksef_async.resources.auth import AuthResource
from ksef_async.resources.security import SecurityResource
from ksef_async.xml.auth_request import AllowedIps, ContextIdentifier, build_auth_token_request
from ksef_async.xml.xades import KeyCertSigner, XmlSigner

__all__ = [
    "Authenticator",
    "CertificateCredentials",
    "Credentials",
    "KsefTokenCredentials",
]

logger = get_logger("auth")

# KSeF exception code: tokens already redeemed, or the status does not allow a refresh (e.g. revoked).
_NO_AUTHORIZATION = ExceptionCode.NO_AUTHORIZATION


def _non_empty(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{attribute.name} must be a non-empty string")


@attrs.frozen
class KsefTokenCredentials:
    """Log in with a KSeF token (created with ``POST /tokens``); the token never appears in a repr.

    Attributes:
        token: The KSeF token as KSeF returned it.
        allowed_ips: Optional IP restriction for the tokens this login issues.
    """

    token: str = attrs.field(repr=False, validator=_non_empty)
    allowed_ips: AllowedIps | None = None


@attrs.frozen
class CertificateCredentials:
    """Log in with an XAdES signature over an ``AuthTokenRequest``.

    Attributes:
        signer: Signs the XML (`ksef_async.xml.xades.KeyCertSigner`, or any `XmlSigner`, e.g. an HSM).
        subject_identifier_type: ``certificateSubject`` (identity from the certificate subject) or
            ``certificateFingerprint`` (identity is the certificate's SHA-256 fingerprint).
        verify_certificate_chain: Sent as ``verifyCertificateChain`` when not None.
        allowed_ips: Optional IP restriction for the tokens this login issues.
    """

    signer: XmlSigner
    subject_identifier_type: Literal["certificateSubject", "certificateFingerprint"] = attrs.field(
        default="certificateSubject",
        validator=attrs.validators.in_(("certificateSubject", "certificateFingerprint")),
    )
    verify_certificate_chain: bool | None = None
    allowed_ips: AllowedIps | None = None

    @classmethod
    def from_pem(
        cls,
        certificate: bytes,
        key: bytes,
        password: bytes | None = None,
        *,
        subject_identifier_type: Literal["certificateSubject", "certificateFingerprint"] = "certificateSubject",
    ) -> CertificateCredentials:
        """Load a PEM certificate and its (optionally encrypted) PEM private key (RSA or EC).

        Raises:
            CryptoError: Unreadable files, wrong password, or key and certificate do not match.
        """
        return cls(KeyCertSigner.from_pem(key, certificate, password), subject_identifier_type)

    @classmethod
    def from_pkcs12(
        cls,
        data: bytes,
        password: bytes | None = None,
        *,
        subject_identifier_type: Literal["certificateSubject", "certificateFingerprint"] = "certificateSubject",
    ) -> CertificateCredentials:
        """Load a PKCS#12 (.p12/.pfx) container with the key and certificate.

        Raises:
            CryptoError: Unreadable container or wrong password.
        """
        return cls(KeyCertSigner.from_pkcs12(data, password), subject_identifier_type)


Credentials = KsefTokenCredentials | CertificateCredentials
"""Either kind of credentials."""


class Authenticator:
    """Owns the tokens of one client: logs in, refreshes before expiry, reacts to 401, logs out.

    Token renewal is single-flight: however many requests need a fresh token at once, one refresh (or login) runs
    and the others wait for it.

    Args:
        credentials: How to log in.
        context: The context to log in to.
        auth: The ``/auth`` resource.
        security: The public-key resource (for the KSeF token's encryption key).
        clock: Wall-clock Unix time (``validUntil`` is wall time).
        refresh_margin: Refresh this many seconds before the access token's ``validUntil``.
        poll_backoff: Waits between polls of ``GET /auth/{referenceNumber}``.
        poll_timeout: Give up a login that stays in progress this long (seconds).
        on_login: Awaited after each successful login (the client reads ``GET /rate-limits`` there).
    """

    def __init__(
        self,
        credentials: Credentials,
        context: ContextIdentifier,
        auth: AuthResource,
        security: SecurityResource,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 60.0,
        poll_backoff: Backoff | None = None,
        poll_timeout: float = 120.0,
        on_login: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.credentials = credentials
        self.context = context
        self._auth = auth
        self._security = security
        self._clock = clock
        self._state = TokenState(refresh_margin=refresh_margin)
        self._poll_backoff = poll_backoff or Backoff()
        self._poll_timeout = poll_timeout
        self._on_login = on_login
        self._lock = asyncio.Lock()
        self.reference_number: str | None = None
        """Reference number of the current login's authentication operation."""

    def __repr__(self) -> str:
        return (
            f"Authenticator(credentials={self.credentials!r}, context={self.context!r}, "
            f"reference_number={self.reference_number!r})"
        )

    @property
    def logged_in(self) -> bool:
        """Whether an access or refresh token is held."""
        return self._state.access is not None or self._state.refresh is not None

    async def access_token(self) -> tuple[str, int]:
        """Return a usable access token and its generation, refreshing or logging in first when needed."""
        state = self._state
        if state.decide(self._clock()) is TokenAction.USE and state.access is not None:
            return state.access.value, state.generation
        logged_in = False
        async with self._lock:
            # Re-decide under the lock: another task may have renewed the token while this one waited.
            action = state.decide(self._clock())
            if action is not TokenAction.USE:
                logged_in = await self._renew(action)
            assert state.access is not None
            token, generation = state.access.value, state.generation
        if logged_in:
            await self._after_login()
        return token, generation

    async def on_unauthorized(self, generation: int) -> None:
        """Handle a 401 for the access token of ``generation``: refresh it once unless already replaced."""
        logged_in = False
        async with self._lock:
            action = self._state.after_401(generation, self._clock())
            if action is not TokenAction.USE:
                logged_in = await self._renew(action)
        if logged_in:
            await self._after_login()

    async def login(self) -> None:
        """Log in now (even with valid tokens) and redeem the tokens."""
        async with self._lock:
            await self._login()
        await self._after_login()

    async def logout(self) -> None:
        """Revoke this login's refresh token (``DELETE /auth/sessions/current``) and forget every token."""
        async with self._lock:
            state = self._state
            now = self._clock()
            # The endpoint takes the access or the refresh token: use whichever is still valid.
            token = next((t for t in (state.access, state.refresh) if t is not None and t.usable(now, 0.0)), None)
            if token is not None:
                try:
                    await self._auth.revoke_current(token=token.value)
                finally:
                    state.clear()
                    logger.info("logged out", extra=extras(reference_number=self.reference_number))
            else:
                state.clear()

    async def _renew(self, action: TokenAction) -> bool:
        """Refresh or log in (caller holds the lock); return whether a full login happened."""
        if action is TokenAction.REFRESH:
            refresh = self._state.refresh
            assert refresh is not None
            try:
                response = await self._auth.refresh(refresh.value)
            except (UnauthorizedError, BadRequestError) as exc:
                if isinstance(exc, BadRequestError) and not exc.has_code(_NO_AUTHORIZATION):
                    raise
                logger.info(
                    "refresh token refused, logging in again",
                    extra=extras(reference_number=self.reference_number, status=exc.status),
                )
            else:
                self._state.set_tokens(
                    Token.from_api(response.access_token.token, response.access_token.valid_until, self._clock())
                )
                logger.info("access token refreshed", extra=extras(reference_number=self.reference_number))
                return False
        await self._login()
        return True

    async def _after_login(self) -> None:
        if self._on_login is None:
            return
        try:
            await self._on_login()
        except ApiError as exc:
            # Not fatal: the limiter keeps the spec's limits.
            logger.warning("post-login hook failed", extra=extras(status=exc.status, error=str(exc)))

    async def _login(self) -> None:
        try:
            await self._login_once()
        except AmbiguousRequestError:
            # A login that may have started (or a redeem that may have happened) leaves nothing to clean up:
            # starting another authentication operation is harmless, so this one step is retried once.
            logger.warning("login step without a clear answer; logging in again", extra=extras())
            await self._login_once()

    async def _login_once(self) -> None:
        started = await self._start()
        reference = started.reference_number
        operation_token = started.authentication_token.token
        status = await poll_until(
            lambda: self._auth.status(reference, operation_token),
            lambda s: classify_auth_status(s.status.code) is not AuthStatus.PENDING,
            what=f"authentication {reference}",
            max_wait=self._poll_timeout,
            backoff=self._poll_backoff,
        )
        self._raise_if_failed(status, reference)
        tokens = await self._auth.redeem(operation_token)
        now = self._clock()
        self._state.set_tokens(
            Token.from_api(tokens.access_token.token, tokens.access_token.valid_until, now),
            Token.from_api(tokens.refresh_token.token, tokens.refresh_token.valid_until, now),
        )
        self.reference_number = reference
        logger.info(
            "logged in",
            extra=extras(reference_number=reference, context=f"{self.context.type}:{self.context.value}"),
        )

    @staticmethod
    def _raise_if_failed(status: AuthenticationOperationStatusResponse, reference: str) -> None:
        if classify_auth_status(status.status.code) is AuthStatus.FAILED:
            logger.warning("authentication failed", extra=extras(reference_number=reference, code=status.status.code))
            raise AuthenticationFailedError(
                status.status.code,
                status.status.description,
                status.status.details or (),
                reference_number=reference,
            )

    async def _start(self) -> AuthenticationInitResponse:
        credentials = self.credentials
        if isinstance(credentials, KsefTokenCredentials):
            return await with_key_rotation(
                self._security, KEY_USAGE_TOKEN, self._start_with_token, what="post_auth_ksef_token"
            )
        challenge = await self._auth.challenge()
        xml = build_auth_token_request(
            challenge.challenge, self.context, credentials.subject_identifier_type, credentials.allowed_ips
        )
        # A signer may be slow (HSM, smart card): keep the event loop free.
        signed = await asyncio.to_thread(credentials.signer.sign, xml)
        return await self._auth.xades_signature(signed, verify_certificate_chain=credentials.verify_certificate_chain)

    async def _start_with_token(self, key: MfPublicKey) -> AuthenticationInitResponse:
        credentials = self.credentials
        assert isinstance(credentials, KsefTokenCredentials)
        # A fresh challenge per attempt: its timestamp is the nonce inside the encrypted token.
        challenge = await self._auth.challenge()
        encrypted = rsa_oaep_encrypt(key.rsa_public_key(), f"{credentials.token}|{challenge.timestamp_ms}".encode())
        policy = None
        if credentials.allowed_ips is not None:
            ips = credentials.allowed_ips
            policy = AuthorizationPolicy(
                allowed_ips=ApiAllowedIps(
                    ip4_addresses=ips.ip4_addresses or None,
                    ip4_ranges=ips.ip4_ranges or None,
                    ip4_masks=ips.ip4_masks or None,
                )
            )
        request = InitTokenAuthenticationRequest(
            challenge=challenge.challenge,
            context_identifier=AuthenticationContextIdentifier(type=self.context.type, value=self.context.value),
            encrypted_token=encrypted,
            public_key_id=None if key.public_key_id is None else b64decode(key.public_key_id),
            authorization_policy=policy,
        )
        return await self._auth.ksef_token(request)
