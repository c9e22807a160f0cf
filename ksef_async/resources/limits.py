"""``client.limits`` and ``client.rate_limits``: the context and subject limits, and the API rate limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ksef_async.core.ratelimit import WindowLimits
from ksef_async.core.ratelimit_groups import RateLimitsReport, parse_rate_limits
from ksef_async.errors import ResponseFormatError
from ksef_async.models import EffectiveApiRateLimits, EffectiveContextLimits, EffectiveSubjectLimits
from ksef_async.models.converter import wire_name
from ksef_async.resources._base import Resource, decode_json

__all__ = ["LimitsResource", "RateLimitsResource", "window_limits"]


class LimitsResource(Resource):
    """``GET /limits/context`` and ``GET /limits/subject``."""

    async def context(self) -> EffectiveContextLimits:
        """Session size and count limits of the authenticated context."""
        return await self._get_model("get_limits_context", EffectiveContextLimits)

    async def subject(self) -> EffectiveSubjectLimits:
        """Certificate enrollment limits of the authenticated subject."""
        return await self._get_model("get_limits_subject", EffectiveSubjectLimits)


class RateLimitsResource(Resource):
    """``GET /rate-limits``."""

    async def get(self) -> EffectiveApiRateLimits:
        """The API rate limits in force for the context and this IP address, as the 2.9.0 model.

        Strict: a server that omits one of the model's 17 groups (any server before 2.8) fails here; use
        `report` to read whatever groups the server sends.

        Raises:
            ResponseFormatError: The body does not match ``EffectiveApiRateLimits``.
        """
        return await self._get_model("get_rate_limits", EffectiveApiRateLimits)

    async def report(self) -> RateLimitsReport:
        """The API rate limits in force, read group by group (what the client puts in its limiter after login).

        Groups the server leaves out are absent (the limiter keeps its values), groups this client does not know
        are kept, ``-1`` is an unlimited window, and a malformed entry is skipped and named in ``problems``.

        Raises:
            ResponseFormatError: The body is not a JSON object.
        """
        body = decode_json("get_rate_limits", await self._send("get_rate_limits"))
        if not isinstance(body, Mapping):
            raise ResponseFormatError("get_rate_limits", ["$: expected EffectiveApiRateLimits (an object)"])
        return parse_rate_limits(body)


def window_limits(limits: EffectiveApiRateLimits | Mapping[str, Any]) -> dict[str, WindowLimits]:
    """Turn ``GET /rate-limits`` into limiter values keyed by group name as the spec spells it (``invoiceSend``).

    Args:
        limits: The structured model, or the raw JSON body (read tolerantly: see
            `ksef_async.core.ratelimit_groups.parse_rate_limits`; malformed entries are left out).

    Raises:
        ValueError: A raw body that is not a JSON object.
    """
    if isinstance(limits, Mapping):
        return parse_rate_limits(limits).limits
    out: dict[str, WindowLimits] = {}
    for field in attrs.fields(type(limits)):
        value = getattr(limits, field.name)
        out[wire_name(field)] = WindowLimits(
            _limited(value.per_second), _limited(value.per_minute), _limited(value.per_hour)
        )
    return out


def _limited(value: int) -> int | None:
    """A window's limit from ``EffectiveApiRateLimitValues``: -1 means the window is not limited."""
    return None if value < 0 else value
