"""``client.security``: the Ministry of Finance public-key certificates, cached per client."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from ksef_async._logging import extras, get_logger
from ksef_async.core.crypto import MfPublicKey, b64, select_public_key
from ksef_async.errors import ResponseFormatError
from ksef_async.models import PublicKeyCertificate
from ksef_async.resources._base import Resource, decode_json, structure_response
from ksef_async.transport import ApiTransport, StorageTransport

__all__ = ["PUBLIC_KEY_ID_LENGTH", "SecurityResource"]

PUBLIC_KEY_ID_LENGTH = 44
"""``PublicKeyCertificate.publicKeyId`` is exactly this long (minLength = maxLength = 44 in the 2.9.0 spec)."""

logger = get_logger("security")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SecurityResource(Resource):
    """``GET /security/public-key-certificates`` and the key choice rule of the docs.

    The list is fetched once and cached; `public_key` with ``refresh=True`` fetches it again (after KSeF answered
    21470, an unknown or retired ``publicKeyId``).

    Args:
        api: The API transport.
        storage: The storage transport.
        now: Returns the current aware UTC time (for the validity check).
    """

    def __init__(
        self, api: ApiTransport, storage: StorageTransport, *, now: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        super().__init__(api, storage)
        self._now = now
        self._keys: list[MfPublicKey] | None = None
        self._lock = asyncio.Lock()

    async def public_key_certificates(self) -> list[PublicKeyCertificate]:
        """Fetch the MF public-key certificates (no cache).

        Raises:
            ResponseFormatError: The body is not an array of ``PublicKeyCertificate``, or a ``publicKeyId`` is not
                exactly 44 characters (Base64 of a SHA-256 digest, as the spec requires).
        """
        op_id = "get_security_public_key_certificates"
        body = decode_json(op_id, await self._send(op_id))
        if not isinstance(body, list):
            raise ResponseFormatError(op_id, ["$: expected an array of PublicKeyCertificate"])
        certificates = [structure_response(op_id, item, PublicKeyCertificate) for item in body]
        bad = [
            f"$[{index}].publicKeyId: expected exactly {PUBLIC_KEY_ID_LENGTH} characters"
            for index, item in enumerate(body)
            if not isinstance(item.get("publicKeyId"), str) or len(item["publicKeyId"]) != PUBLIC_KEY_ID_LENGTH
        ]
        if bad:
            raise ResponseFormatError(op_id, bad)
        return certificates

    async def public_keys(self, *, refresh: bool = False) -> list[MfPublicKey]:
        """Return the MF keys, from the cache unless ``refresh`` (concurrent callers share one fetch)."""
        stale = self._keys
        async with self._lock:
            if self._keys is None or (refresh and self._keys is stale):
                certificates = await self.public_key_certificates()
                self._keys = [
                    MfPublicKey.from_api(
                        c.certificate, c.valid_from, c.valid_to, (str(u) for u in c.usage), b64(c.public_key_id)
                    )
                    for c in certificates
                ]
                logger.info("MF public keys fetched", extra=extras(count=len(self._keys)))
            return list(self._keys)

    async def public_key(self, usage: str, *, refresh: bool = False) -> MfPublicKey:
        """Return the key for ``usage`` (``KsefTokenEncryption`` or ``SymmetricKeyEncryption``).

        Raises:
            CryptoError: No certificate with that usage is valid now.
        """
        return select_public_key(await self.public_keys(refresh=refresh), usage, self._now())
