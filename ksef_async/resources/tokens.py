"""``client.tokens``: KSeF tokens of the context (create, list, status, revoke)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from ksef_async.models import (
    AuthenticationTokenStatus,
    GenerateTokenRequest,
    GenerateTokenResponse,
    QueryTokensResponse,
    QueryTokensResponseItem,
    TokenPermissionType,
    TokenStatusResponse,
)
from ksef_async.models.converter import unstructure
from ksef_async.resources._base import Resource

__all__ = ["TokensResource"]


class TokensResource(Resource):
    """The ``/tokens`` operations.

    KSeF creates tokens only for a login made with a signature (XAdES) in a ``Nip`` or ``InternalId`` context;
    a token gets at most the permissions of that login.
    """

    async def create(self, permissions: Iterable[TokenPermissionType | str], description: str) -> GenerateTokenResponse:
        """``POST /tokens``: a new KSeF token; the secret is returned only here (its repr is redacted).

        Args:
            permissions: ``TokenPermissionType`` values (``InvoiceRead``, ``InvoiceWrite``...).
            description: 5 to 256 characters.
        """
        request = GenerateTokenRequest(permissions=tuple(permissions), description=description)
        return await self._get_model("post_tokens", GenerateTokenResponse, json_body=unstructure(request))

    async def list(
        self,
        *,
        statuses: Iterable[AuthenticationTokenStatus | str] = (),
        description: str | None = None,
        author_identifier: str | None = None,
        author_identifier_type: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[QueryTokensResponseItem]:
        """``GET /tokens``: the context's tokens matching the filters, following continuation tokens.

        Args:
            statuses: Only tokens in these statuses (the ``status`` parameter is repeated).
            description: Only tokens whose description contains this text (at least 3 characters).
            author_identifier: Only tokens created by this identifier (at least 3 characters).
            author_identifier_type: ``Nip``, ``Pesel`` or ``Fingerprint``.
            page_size: 10 to 100 per page.
        """
        params: list[tuple[str, Any]] = [("status", str(s)) for s in statuses]
        for name, value in (
            ("description", description),
            ("authorIdentifier", author_identifier),
            ("authorIdentifierType", author_identifier_type),
            ("pageSize", page_size),
        ):
            if value is not None:
                params.append((name, value))
        async for page in self._pages("get_tokens", QueryTokensResponse, params=params):
            for item in page.tokens:
                yield item

    async def status(self, reference_number: str) -> TokenStatusResponse:
        """``GET /tokens/{referenceNumber}``: one token's status and permissions (never the secret)."""
        return await self._get_model(
            "get_tokens_by_reference_number",
            TokenStatusResponse,
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )

    async def revoke(self, reference_number: str) -> None:
        """``DELETE /tokens/{referenceNumber}``: later logins with the token fail (status 450)."""
        await self._send(
            "delete_tokens_by_reference_number",
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )
