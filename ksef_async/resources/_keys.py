"""Encryption of a session key under the MF key, with the one retry KSeF's key rotation calls for (21470)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ksef_async._logging import extras, get_logger
from ksef_async.core.codes import ExceptionCode
from ksef_async.core.crypto import MfPublicKey, SessionKey, b64decode
from ksef_async.errors import BadRequestError
from ksef_async.models import EncryptionInfo
from ksef_async.resources.security import SecurityResource

__all__ = ["UNKNOWN_PUBLIC_KEY", "encryption_info", "with_key_rotation"]

T = TypeVar("T")

UNKNOWN_PUBLIC_KEY = ExceptionCode.UNKNOWN_PUBLIC_KEY
"""KSeF exception code: the ``publicKeyId`` is unknown or retired (emergency key rotation)."""

logger = get_logger("security")


def encryption_info(key: SessionKey, public_key: MfPublicKey) -> EncryptionInfo:
    """Return the request's ``encryption`` object: the wrapped AES key, its IV and the MF key's ``publicKeyId``."""
    return EncryptionInfo(
        encrypted_symmetric_key=key.wrap(public_key.rsa_public_key()),
        initialization_vector=key.iv,
        public_key_id=None if public_key.public_key_id is None else b64decode(public_key.public_key_id),
    )


async def with_key_rotation(
    security: SecurityResource, usage: str, call: Callable[[MfPublicKey], Awaitable[T]], *, what: str
) -> T:
    """Run ``call`` with the current MF key for ``usage``; on 400/21470 fetch the keys again and run it once more.

    ``call`` must encrypt afresh with the key it is given.
    """
    key = await security.public_key(usage)
    try:
        return await call(key)
    except BadRequestError as exc:
        if not exc.has_code(UNKNOWN_PUBLIC_KEY):
            raise
        logger.warning("MF public key rejected (21470): fetching the keys again", extra=extras(operation=what))
    return await call(await security.public_key(usage, refresh=True))
