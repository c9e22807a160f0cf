"""Server-side rate limiting: KSeF's three sliding windows per (context, group), with switchable profiles.

Counting rules (digest §10): requests are counted per context (the bearer token's context; the client IP for the
public operations) in the last 1 s, 60 s and 3600 s. Operations of a named group share one counter; the ``other``
group has "its own counter per endpoint", so there the counter key includes the operation. A rejected request is
not counted. Profiles: ``production`` (the spec's ``x-rate-limits``), ``off``, or custom values set through
``POST /testdata/rate-limits``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ksef_async.core.ratelimit import SlidingWindowState, WindowLimits
from ksef_async.errors import ConfigurationError
from ksef_async.operations import PUBLIC_GROUP, RATE_LIMIT_GROUPS, Operation

__all__ = ["ANONYMOUS_GROUP", "API_GROUPS", "GLOBAL_GROUP", "GLOBAL_LIMITS", "OVERRIDABLE_GROUPS", "RateLimiter"]

API_GROUPS: tuple[str, ...] = (
    "onlineSession",
    "onlineSessionClose",
    "batchSession",
    "batchSessionClose",
    "invoiceSend",
    "invoiceStatus",
    "sessionList",
    "sessionInvoiceList",
    "sessionMisc",
    "invoiceMetadata",
    "invoiceExport",
    "invoiceExportStatus",
    "invoiceDownload",
    "collectiveIdentifier",
    "other",
    "anonymous",
    "global",
)
"""The seventeen groups of ``EffectiveApiRateLimits``, in the spec's order."""

OVERRIDABLE_GROUPS: tuple[str, ...] = (
    "onlineSession",
    "batchSession",
    "invoiceSend",
    "invoiceStatus",
    "sessionList",
    "sessionInvoiceList",
    "sessionMisc",
    "invoiceMetadata",
    "invoiceExport",
    "invoiceExportStatus",
    "invoiceDownload",
    "collectiveIdentifier",
    "other",
)
"""The thirteen groups of ``ApiRateLimitsOverride`` (``POST /testdata/rate-limits``): the close, anonymous and
global groups cannot be overridden."""

ANONYMOUS_GROUP = "anonymous"
"""``EffectiveApiRateLimits.anonymous``: the unauthenticated operations (the operation table's ``public``)."""
GLOBAL_GROUP = "global"
"""``EffectiveApiRateLimits.global``: every operation, counted per client IP address."""
GLOBAL_LIMITS = WindowLimits(75)
"""The spec's example value of ``global`` (75/-1/-1; -1 means not limited)."""


def _production_limits() -> dict[str, WindowLimits]:
    limits = dict(RATE_LIMIT_GROUPS)
    limits[ANONYMOUS_GROUP] = limits.pop(PUBLIC_GROUP)
    limits[GLOBAL_GROUP] = GLOBAL_LIMITS
    return limits


class RateLimiter:
    """Admission control for the simulator's API operations.

    Args:
        profile: ``"production"`` (the spec's limits) or ``"off"`` (nothing is limited).
    """

    def __init__(self, profile: str = "production") -> None:
        if profile not in ("production", "off"):
            raise ConfigurationError(f"rate-limit profile must be 'production' or 'off', got {profile!r}")
        self.enabled = profile == "production"
        self._limits: dict[str, WindowLimits] = _production_limits()
        self._states: dict[tuple[str, str], SlidingWindowState] = {}

    def effective(self) -> dict[str, WindowLimits]:
        """Limits in force per API group (what ``GET /rate-limits`` reports)."""
        return {group: self._limits[group] for group in API_GROUPS}

    def set_limits(self, limits: Mapping[str, WindowLimits]) -> None:
        """Put custom limits in force for the given groups and switch limiting on."""
        for name, value in limits.items():
            group = ANONYMOUS_GROUP if name == PUBLIC_GROUP else name
            if group not in self._limits:
                raise ConfigurationError(f"unknown rate-limit group {group!r}")
            self._limits[group] = value
        self.enabled = True
        self._states.clear()

    def production(self) -> None:
        """Restore the spec's limits and switch limiting on."""
        self._limits = _production_limits()
        self.enabled = True
        self._states.clear()

    def admit(self, op: Operation, subject: str, now: float) -> float | None:
        """Count one request of ``op`` by ``subject`` at ``now``.

        Returns:
            ``None`` when admitted, else the number of seconds after which a retry would be admitted.
        """
        if not self.enabled:
            return None
        group = op.rate_group
        counter = f"{group}:{op.operation_id}" if group == "other" else group
        key = (subject, counter)
        state = self._states.get(key)
        limits = self._limits.get(ANONYMOUS_GROUP if group == PUBLIC_GROUP else group, op.limits)
        if state is None or state.limits != limits:
            state = SlidingWindowState(limits, margin=0.0)
            self._states[key] = state
        allowed = state.try_admit(now)
        if allowed <= now:
            return None
        return allowed - now

    @staticmethod
    def retry_after_seconds(wait: float) -> int:
        """``Retry-After`` as KSeF sends it: whole seconds, at least 1."""
        return max(1, math.ceil(wait))
