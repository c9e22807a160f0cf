"""The storage transport: pre-signed URL uploads and downloads on their own session, never with a token."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import BinaryIO

import aiohttp
import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.redact import redact_url
from ksef_async.errors import ConfigurationError, IntegrityError, TransportError, api_error_from_response
from ksef_async.transport._limits import MAX_DOWNLOAD_BODY, MAX_ERROR_BODY, read_limited

__all__ = ["HASH_HEADER", "StorageStream", "StorageTransport", "check_hash"]

logger = get_logger("storage")

HASH_HEADER = "x-ms-meta-hash"
"""Download header carrying the Base64 SHA-256 of the document (UPO, invoice, export part)."""

# Headers a pre-signed request must not carry: the URL itself is the credential.
_FORBIDDEN = frozenset({"authorization", "transfer-encoding"})


@attrs.frozen
class StorageStream:
    """An open download from a pre-signed URL: its body in chunks and the ``x-ms-meta-hash`` it announced."""

    announced_hash: str | None
    chunks: AsyncIterator[bytes]


class StorageTransport:
    """Talks to pre-signed (Azure-blob-style) URLs over a session without default headers.

    Part uploads and these downloads are not rate-limited by KSeF, so nothing here touches the limiter.

    Args:
        session: The storage session (its own connection limit and connect/read timeouts; owned by the caller);
            ``None`` until the owner opens one and `bind` s it.
    """

    def __init__(self, session: aiohttp.ClientSession | None) -> None:
        self._bound = session

    def __repr__(self) -> str:
        return "StorageTransport()"

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._bound is None:
            raise ConfigurationError("the client is not open: use 'async with KsefClient(...)'")
        return self._bound

    def bind(self, session: aiohttp.ClientSession | None) -> None:
        """Send through ``session`` from now on (``None``: its owner closed it, and calls raise until rebound)."""
        self._bound = session

    async def upload(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str | None],
        body: bytes | BinaryIO,
        size: int,
    ) -> int:
        """Send one part exactly as KSeF described it: its method, URL and headers, plus Content-Length.

        The body is never chunked and never carries ``Authorization``. A file object is read from its current
        position; the caller rewinds it before a retry.

        Returns:
            The HTTP status (2xx).

        Raises:
            ApiError: The storage answered with an error status.
            TransportError: The connection failed or timed out.
        """
        request_headers = {k: v for k, v in headers.items() if v is not None and k.lower() not in _FORBIDDEN}
        request_headers["Content-Length"] = str(size)
        safe_url = redact_url(url)
        try:
            async with self._session.request(method.upper(), url, data=body, headers=request_headers) as response:
                status = response.status
                text = await read_limited(response, MAX_ERROR_BODY, safe_url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("part upload failed", extra=extras(url=safe_url, error=type(exc).__name__))
            raise TransportError(f"part upload to {safe_url} failed: {type(exc).__name__}") from None
        logger.debug("part upload", extra=extras(url=safe_url, status=status, size=size))
        if not 200 <= status < 300:  # noqa: PLR2004
            raise api_error_from_response(status, text, operation="part_upload")
        return status

    async def download(self, url: str, *, verify_hash: bool = True) -> bytes:
        """GET a pre-signed URL and return the body, checked against ``x-ms-meta-hash`` when present.

        Raises:
            IntegrityError: The body's SHA-256 differs from ``x-ms-meta-hash``.
            ApiError: The storage answered with an error status (e.g. 403 after the link expired).
            TransportError: The connection failed or timed out.
        """
        safe_url = redact_url(url)
        try:
            async with self._session.get(url) as response:
                status = response.status
                limit = MAX_DOWNLOAD_BODY if 200 <= status < 300 else MAX_ERROR_BODY  # noqa: PLR2004
                body = await read_limited(response, limit, safe_url)
                announced = response.headers.get(HASH_HEADER)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("download failed", extra=extras(url=safe_url, error=type(exc).__name__))
            raise TransportError(f"download from {safe_url} failed: {type(exc).__name__}") from None
        logger.debug("download", extra=extras(url=safe_url, status=status, size=len(body)))
        if not 200 <= status < 300:  # noqa: PLR2004
            raise api_error_from_response(status, body, operation="download")
        if verify_hash:
            check_hash(body, announced, safe_url)
        return body

    @asynccontextmanager
    async def stream(self, url: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[StorageStream]:
        """GET a pre-signed URL and stream its body (large export parts), without holding it in memory.

        The caller checks the hash over the chunks it consumes (`StorageStream.announced_hash`).

        Raises:
            ApiError: The storage answered with an error status (e.g. 403 once the link expired).
            TransportError: The connection failed or timed out, before or while streaming.
        """
        safe_url = redact_url(url)
        try:
            async with self._session.get(url) as response:
                if not 200 <= response.status < 300:  # noqa: PLR2004
                    body = await read_limited(response, MAX_ERROR_BODY, safe_url)
                    raise api_error_from_response(response.status, body, operation="download")
                logger.debug("download stream", extra=extras(url=safe_url, status=response.status))
                yield StorageStream(response.headers.get(HASH_HEADER), _chunks(response, chunk_size, safe_url))
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("download failed", extra=extras(url=safe_url, error=type(exc).__name__))
            raise TransportError(f"download from {safe_url} failed: {type(exc).__name__}") from None


async def _chunks(response: aiohttp.ClientResponse, size: int, safe_url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(size):
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"download from {safe_url} failed: {type(exc).__name__}") from None


def check_hash(body: bytes, announced: str | None, source: str) -> None:
    """Raise `IntegrityError` when ``announced`` (Base64 SHA-256) is given and does not match ``body``."""
    if announced is None:
        return
    actual = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if actual != announced.strip():
        raise IntegrityError(
            f"{source}: SHA-256 of the {len(body)} bytes received is {actual}, but {HASH_HEADER} says {announced}"
        )
