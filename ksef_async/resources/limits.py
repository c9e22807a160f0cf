"""``client.limits`` and ``client.rate_limits``: the context and subject limits, and the API rate limits."""

from __future__ import annotations

import attrs

from ksef_async.core.ratelimit import WindowLimits
from ksef_async.models import EffectiveApiRateLimits, EffectiveContextLimits, EffectiveSubjectLimits
from ksef_async.models.converter import wire_name
from ksef_async.resources._base import Resource

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
        """The API rate limits in force for the context and this IP address."""
        return await self._get_model("get_rate_limits", EffectiveApiRateLimits)


def window_limits(limits: EffectiveApiRateLimits) -> dict[str, WindowLimits]:
    """Turn ``GET /rate-limits`` into limiter values keyed by group name as the spec spells it (``invoiceSend``)."""
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
