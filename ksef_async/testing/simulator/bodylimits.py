"""Request body limits of the simulator's API routes, enforced while reading (after authentication)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

__all__ = ["DEFAULT_BODY_LIMIT", "ROUTE_BODY_LIMITS", "body_limit", "read_body"]

DEFAULT_BODY_LIMIT: Final = 1024 * 1024
"""JSON requests and signed XML are kilobytes: 1 MiB is far above any of them."""
ROUTE_BODY_LIMITS: Final[dict[str, int]] = {
    # An encrypted invoice in Base64 (up to 10 MB of invoice, the highest configurable limit, plus padding and 4/3).
    "post_sessions_online_invoices": 16 * 1024 * 1024,
}
"""Operations whose bodies may be larger than `DEFAULT_BODY_LIMIT`."""


def body_limit(operation_id: str) -> int:
    """The most bytes the body of ``operation_id`` may have."""
    return ROUTE_BODY_LIMITS.get(operation_id, DEFAULT_BODY_LIMIT)


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the request body, refusing it (413) by ``Content-Length`` or as soon as it passes ``limit`` bytes.

    Raises:
        web.HTTPRequestEntityTooLarge: The body is larger than ``limit``.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)
