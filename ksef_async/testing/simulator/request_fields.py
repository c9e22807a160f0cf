"""Reading a handler's input: typed body fields (400 21405 naming the field) and ``pageSize`` paging."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ksef_async.core.crypto import (
    b64decode,
)
from ksef_async.errors import CryptoError
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.runtime import Runtime

__all__ = [
    "b64_field",
    "opt",
    "page_size",
    "paged",
    "req",
]


def req(body: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``body[name]`` if present and of ``kind``; else 400 21405 naming the field."""
    if not isinstance(body, dict) or name not in body or body[name] is None:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"'{name}' is required"])
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"'{name}' has a wrong type"])
    return value


def opt(body: Any, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """Like `req` for an optional field: ``default`` when absent or null."""
    if not isinstance(body, dict) or body.get(name) is None:
        return default
    return req(body, name, kind)


def b64_field(body: Any, name: str) -> bytes:
    """``body[name]`` decoded from Base64; 400 21405 naming the field when it is not."""
    try:
        return b64decode(req(body, name, str), field=name)
    except CryptoError:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"'{name}' is not Base64"]) from None


def page_size(request: web.Request, low: int, high: int) -> int:
    """The ``pageSize`` query parameter (``low`` when absent); 400 21405 outside ``low..high``."""
    raw = request.query.get("pageSize", str(low))
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if not low <= size <= high:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"pageSize must be {low}..{high}"])
    return size


def paged(
    rt: Runtime, request: web.Request, scope: str, items: list[Any], *, low: int, high: int
) -> tuple[list[Any], str | None]:
    """One page of ``items`` per ``pageSize`` (``low..high``) and ``x-continuation-token``; the next token or None."""
    size = page_size(request, low, high)
    offset = rt.parse_continuation(scope, request.headers.get("x-continuation-token"))
    page = items[offset : offset + size]
    more = offset + size < len(items)
    return page, rt.continuation(scope, offset + size) if more else None
