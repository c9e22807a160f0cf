"""``client.auth``: the authentication operations (challenge, KSeF token, XAdES, status, redeem, refresh, sessions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ksef_async.models import (
    AuthenticationChallengeResponse,
    AuthenticationInitResponse,
    AuthenticationListItem,
    AuthenticationListResponse,
    AuthenticationOperationStatusResponse,
    AuthenticationTokenRefreshResponse,
    AuthenticationTokensResponse,
    InitTokenAuthenticationRequest,
)
from ksef_async.models.converter import unstructure
from ksef_async.resources._base import Resource

__all__ = ["AuthResource"]


class AuthResource(Resource):
    """The ``/auth`` operations.

    `ksef_async.auth.Authenticator` strings them into a login; call them directly only to drive a login yourself.
    """

    async def challenge(self) -> AuthenticationChallengeResponse:
        """``POST /auth/challenge``: a fresh challenge (valid for 10 minutes)."""
        return await self._get_model("post_auth_challenge", AuthenticationChallengeResponse)

    async def ksef_token(self, request: InitTokenAuthenticationRequest) -> AuthenticationInitResponse:
        """``POST /auth/ksef-token``: start a login with an encrypted KSeF token."""
        return await self._get_model("post_auth_ksef_token", AuthenticationInitResponse, json_body=unstructure(request))

    async def xades_signature(
        self, signed_xml: bytes, *, verify_certificate_chain: bool | None = None
    ) -> AuthenticationInitResponse:
        """``POST /auth/xades-signature``: start a login with a signed ``AuthTokenRequest``."""
        params = (
            None
            if verify_certificate_chain is None
            else {"verifyCertificateChain": str(verify_certificate_chain).lower()}
        )
        return await self._get_model(
            "post_auth_xades_signature",
            AuthenticationInitResponse,
            content=signed_xml,
            content_type="application/xml",
            params=params,
        )

    async def status(self, reference_number: str, authentication_token: str) -> AuthenticationOperationStatusResponse:
        """``GET /auth/{referenceNumber}`` with the operation's ``authenticationToken``."""
        return await self._get_model(
            "get_auth_by_reference_number",
            AuthenticationOperationStatusResponse,
            path_params={"referenceNumber": reference_number},
            bearer=authentication_token,
            reference_number=reference_number,
        )

    async def redeem(self, authentication_token: str) -> AuthenticationTokensResponse:
        """``POST /auth/token/redeem``: exchange the authentication token for access and refresh tokens (once)."""
        return await self._get_model(
            "post_auth_token_redeem", AuthenticationTokensResponse, bearer=authentication_token
        )

    async def refresh(self, refresh_token: str) -> AuthenticationTokenRefreshResponse:
        """``POST /auth/token/refresh``: a new access token for the refresh token."""
        return await self._get_model(
            "post_auth_token_refresh", AuthenticationTokenRefreshResponse, bearer=refresh_token, idempotent=True
        )

    async def sessions(self, *, page_size: int | None = None) -> AsyncIterator[AuthenticationListItem]:
        """``GET /auth/sessions``: every authentication session of the context, page by page."""
        params = None if page_size is None else {"pageSize": page_size}
        async for page in self._pages("get_auth_sessions", AuthenticationListResponse, params=params):
            for item in page.items:
                yield item

    async def revoke_current(self, *, token: str | None = None) -> None:
        """``DELETE /auth/sessions/current``: revoke this login's refresh token (access tokens live until expiry).

        Args:
            token: The refresh token to send; by default the access token is used.
        """
        await self._send("delete_auth_sessions_current", bearer=token)

    async def revoke(self, reference_number: str) -> None:
        """``DELETE /auth/sessions/{referenceNumber}``: revoke another authentication session of the context."""
        await self._send(
            "delete_auth_sessions_by_reference_number",
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )
