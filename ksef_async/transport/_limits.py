"""Bounds on what a server may make us read or wait for: body sizes and ``Retry-After``."""

from __future__ import annotations

from typing import Final

import aiohttp

from ksef_async.errors import ProtocolError, RateLimitedError

__all__ = [
    "MAX_API_BODY",
    "MAX_DOWNLOAD_BODY",
    "MAX_ERROR_BODY",
    "MAX_RETRY_AFTER",
    "check_retry_after",
    "read_limited",
]

MAX_API_BODY: Final = 32 * 1024 * 1024
"""Largest successful API body read (JSON pages are kilobytes; an invoice is at most 10 MB, a UPO a few MB)."""
MAX_ERROR_BODY: Final = 256 * 1024
"""Largest error body read: KSeF's error bodies are a few hundred bytes."""
MAX_DOWNLOAD_BODY: Final = 64 * 1024 * 1024
"""Largest pre-signed download read whole (UPO pages); export parts are streamed and bounded by their declaration."""
MAX_RETRY_AFTER: Final = 3600.0
"""Longest ``Retry-After`` obeyed: KSeF's longest rate-limit window is one hour."""


async def read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """Read ``response``'s body, stopping the moment it passes ``limit`` bytes.

    Raises:
        ProtocolError: ``Content-Length`` or the bytes received exceed ``limit``.
    """
    length = response.content_length
    if length is not None and length > limit:
        raise ProtocolError(f"{what}: the server announced a {length}-byte body; at most {limit} are read")
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise ProtocolError(f"{what}: the body is larger than {limit} bytes: stopped reading")
    return bytes(body)


def check_retry_after(error: RateLimitedError, what: str, *, limit: float = MAX_RETRY_AFTER) -> None:
    """Refuse a ``Retry-After`` longer than ``limit`` before anything (the shared limiter included) obeys it.

    Raises:
        ProtocolError: ``Retry-After`` asks for more than ``limit`` seconds (chained to the 429).
    """
    wait = error.retry_after
    if wait is not None and not wait <= limit:  # also catches NaN
        raise ProtocolError(
            f"{what}: 429 with Retry-After {wait:.6g} s, more than the {limit:.0f} s any KSeF limit needs: not waiting"
        ) from error
