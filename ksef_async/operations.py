"""The KSeF operation table: method, path, permissions, token and rate-limit group of every API operation.

The data is generated from ``schemas/openapi.json`` into ``ksef_async._operations_table`` by
``tools/generate_models.py``; this module turns it into :class:`Operation` values and answers lookups. The
client's rate limiter and the simulator both read it, so they agree on groups and limits.

Facts taken from the spec:

* limits come from ``x-rate-limits``; the group name from the last column of the table in the 429 response's
  description (``| **Limity liczby żądań** | 10 | 20 | 60 | batchSession``);
* the 16 public operations carry only ``perSecond: 60`` and no group name: they share the group ``anonymous``
  (``EffectiveApiRateLimits.anonymous``, counted per IP address);
* every operation also counts in ``global`` (per IP address), which no 429 table names: `API_RATE_LIMITS` adds
  it to the groups of the operations (see `ksef_async.core.ratelimit_groups`);
* ``security: [{"Bearer": []}]`` means a bearer token; the description names the token when it is not (only)
  the access token: ``AuthenticationToken`` for ``GET /auth/{referenceNumber}`` and ``POST /auth/token/redeem``,
  ``RefreshToken`` for ``POST /auth/token/refresh``, ``RefreshToken`` or ``AccessToken`` for
  ``DELETE /auth/sessions/current``;
* the spec has no ``operationId``: ids are derived as ``<method>_<static segments>[_by_<last parameter>]``,
  e.g. ``post_sessions_batch_close`` for ``POST /sessions/batch/{referenceNumber}/close``.
"""

from __future__ import annotations

import enum
import types
import urllib.parse
from collections.abc import Mapping

import attrs

from ksef_async._operations_table import ROWS
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.core.ratelimit_groups import ANONYMOUS_GROUP, GLOBAL_GROUP, GLOBAL_LIMITS, PER_IP_GROUPS

__all__ = [
    "ANONYMOUS_GROUP",
    "API_RATE_LIMITS",
    "GLOBAL_GROUP",
    "GLOBAL_LIMITS",
    "OPERATIONS",
    "PER_IP_GROUPS",
    "PUBLIC_GROUP",
    "RATE_LIMIT_GROUPS",
    "Operation",
    "TokenKind",
    "match",
    "operation",
]

PUBLIC_GROUP = ANONYMOUS_GROUP
"""The group shared by the unauthenticated operations the spec limits to 60 requests per second (``anonymous``)."""


class TokenKind(enum.StrEnum):
    """Which bearer token an operation takes."""

    ACCESS = "access"
    """The access token from ``POST /auth/token/redeem`` or ``/auth/token/refresh``."""
    AUTHENTICATION = "authentication"
    """The ``authenticationToken`` returned when an authentication operation starts."""
    REFRESH = "refresh"
    """The refresh token."""


@attrs.frozen(kw_only=True)
class Operation:
    """One KSeF API operation as the spec states it."""

    operation_id: str
    """Derived id, e.g. ``post_sessions_batch`` (the spec has none)."""
    method: str
    """Upper-case HTTP method."""
    path: str
    """Path template relative to the API base URL, e.g. ``/sessions/batch/{referenceNumber}/close``."""
    summary: str
    """The spec's (Polish) summary."""
    tag: str
    """The spec's tag (API area)."""
    required_permissions: tuple[str, ...]
    """``x-required-permissions``: any one of them suffices; empty when the spec states none."""
    rate_group: str
    """Rate-limit group name (``public`` for the unauthenticated operations)."""
    limits: WindowLimits
    """``x-rate-limits`` of the operation."""
    tokens: tuple[TokenKind, ...]
    """Bearer tokens the operation accepts, in the spec's order; empty when it needs no ``Authorization``."""
    success_status: int
    """The one 2xx status the spec documents."""
    request_schema: str | None
    """Component schema name of the JSON request body (``None``: no JSON body)."""
    response_schema: str | None
    """Component schema name of the JSON success body (``None``: empty body or XML)."""
    response_is_list: bool
    """Whether the JSON success body is an array of ``response_schema`` items."""

    @property
    def needs_bearer(self) -> bool:
        """Whether the request carries ``Authorization: Bearer ...``."""
        return bool(self.tokens)

    @property
    def path_params(self) -> tuple[str, ...]:
        """Names of the templated path segments, in order."""
        return tuple(s[1:-1] for s in self.path.strip("/").split("/") if s.startswith("{"))

    def expand(self, **params: str) -> str:
        """Return the concrete path with each ``{name}`` replaced by its percent-encoded value.

        Raises:
            TypeError: a parameter is missing, unknown or empty (a programming error, like a bad call).
        """
        expected = set(self.path_params)
        if set(params) != expected:
            missing, unknown = sorted(expected - set(params)), sorted(set(params) - expected)
            raise TypeError(f"{self.operation_id}: missing path parameters {missing}, unknown {unknown}")
        if empty := sorted(name for name, value in params.items() if not value):
            raise TypeError(f"{self.operation_id}: empty path parameters {empty}")
        path = self.path
        for name, value in params.items():
            path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        return path


def _build() -> tuple[Operation, ...]:
    return tuple(
        Operation(
            operation_id=row.operation_id,
            method=row.method,
            path=row.path,
            summary=row.summary,
            tag=row.tag,
            required_permissions=row.required_permissions,
            rate_group=row.rate_group,
            limits=WindowLimits(row.per_second, row.per_minute, row.per_hour),
            tokens=tuple(TokenKind(t) for t in row.tokens),
            success_status=row.success_status,
            request_schema=row.request_schema,
            response_schema=row.response_schema,
            response_is_list=row.response_is_list,
        )
        for row in ROWS
    )


OPERATIONS: tuple[Operation, ...] = _build()
"""Every operation of the spec, in spec order."""

_BY_ID: Mapping[str, Operation] = types.MappingProxyType({op.operation_id: op for op in OPERATIONS})

# The generator refuses a group whose operations disagree on limits, so any member speaks for the group.
RATE_LIMIT_GROUPS: Mapping[str, WindowLimits] = types.MappingProxyType({op.rate_group: op.limits for op in OPERATIONS})
"""Limits of each rate-limit group an operation names, from the spec (read ``GET /rate-limits`` for the live values)."""

API_RATE_LIMITS: Mapping[str, WindowLimits] = types.MappingProxyType({**RATE_LIMIT_GROUPS, GLOBAL_GROUP: GLOBAL_LIMITS})
"""Every group of ``EffectiveApiRateLimits`` with the spec's values: `RATE_LIMIT_GROUPS` plus ``global``."""

_BY_METHOD: Mapping[str, tuple[tuple[tuple[str, ...], Operation], ...]] = types.MappingProxyType(
    {
        method: tuple((tuple(op.path.strip("/").split("/")), op) for op in OPERATIONS if op.method == method)
        for method in sorted({op.method for op in OPERATIONS})
    }
)


def operation(op_id: str) -> Operation:
    """Return the operation with this derived id.

    Raises:
        KeyError: no operation has this id.
    """
    try:
        return _BY_ID[op_id]
    except KeyError:
        raise KeyError(f"unknown KSeF operation id {op_id!r}") from None


def match(method: str, path: str) -> Operation:
    """Return the operation whose template matches a concrete request path.

    Args:
        method: HTTP method, any case.
        path: path relative to the API base URL (``/sessions/20250625-SO-.../invoices``); a query string is
            ignored. Segments are compared as sent (no percent-decoding).

    Static segments win over templated ones, left to right: ``/sessions/X/invoices/failed`` is the
    failed-invoices list, not the status of an invoice whose reference number is ``failed``.

    Raises:
        KeyError: no operation of this method matches the path.
    """
    segments = tuple(path.split("?", 1)[0].strip("/").split("/"))
    best: tuple[tuple[bool, ...], Operation] | None = None
    for template, op in _BY_METHOD.get(method.upper(), ()):
        if len(template) != len(segments):
            continue
        score = []
        for pattern, actual in zip(template, segments, strict=True):
            templated = pattern.startswith("{")
            if not actual or (not templated and pattern != actual):
                break
            score.append(templated)  # False (static) sorts before True (templated)
        else:
            key = tuple(score)
            if best is None or key < best[0]:
                best = (key, op)
    if best is None:
        raise KeyError(f"no KSeF operation matches {method.upper()} {path}")
    return best[1]
