"""Server-side rate limiting: KSeF's three sliding windows per (context, group) and per IP, switchable profiles.

Counting rules (spec 2.9.0 ``x-rate-limits``, official docs ``limity/limity-api.md``): requests are counted per
(context, client IP address) (the bearer token's context; the client IP alone for the ``anonymous`` operations,
which have no context) in the last 1 s, 60 s and 3600 s, across all connections: several processes of one context
behind one address share one counter. Operations of a
named group share one counter (session close has its own groups, ``onlineSessionClose`` and
``batchSessionClose``); the ``other`` group has "its own counter per endpoint", so there the counter key includes
the operation. Every API operation also counts in ``global``, per client IP address across all contexts and
connections ("Limity globalne dla wszystkich operacji API (per adres IP)"). A request is admitted only when its
group and ``global`` both allow it, and a refused request is counted in neither; the 429 names the group that
refused (the one with the longer wait when both do). Profiles: ``production`` (the spec's values, plus any
environment overrides given to the constructor), ``off``, or custom values for the 13 groups of
``POST /testdata/rate-limits``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from ksef_async.core.ratelimit import SlidingWindowState, WindowLimits
from ksef_async.errors import ConfigurationError
from ksef_async.models import ApiRateLimitsOverride, EffectiveApiRateLimits
from ksef_async.models.converter import wire_name
from ksef_async.operations import ANONYMOUS_GROUP, API_RATE_LIMITS, GLOBAL_GROUP, GLOBAL_LIMITS, Operation

__all__ = [
    "ANONYMOUS_GROUP",
    "API_GROUPS",
    "GLOBAL_GROUP",
    "GLOBAL_LIMITS",
    "OVERRIDABLE_GROUPS",
    "RateLimiter",
    "Refusal",
]

API_GROUPS: tuple[str, ...] = tuple(wire_name(f) for f in attrs.fields(EffectiveApiRateLimits))
"""The seventeen groups of ``EffectiveApiRateLimits``, in the spec's order."""

OVERRIDABLE_GROUPS: tuple[str, ...] = tuple(wire_name(f) for f in attrs.fields(ApiRateLimitsOverride))
"""The thirteen groups of ``ApiRateLimitsOverride`` (``POST /testdata/rate-limits``): the close, anonymous and
global groups cannot be overridden."""

# The operation table called the anonymous group ``public`` before 2.9.0; `RateLimiter.set_limits` still takes it.
_OLD_PUBLIC_NAME = "public"


@attrs.frozen
class Refusal:
    """Why a request was refused: the group whose limit it would break and the seconds until it would pass."""

    group: str
    wait: float


def _production_limits(overrides: Mapping[str, WindowLimits]) -> dict[str, WindowLimits]:
    limits = {group: API_RATE_LIMITS[group] for group in API_GROUPS}
    limits.update(overrides)
    return limits


class RateLimiter:
    """Admission control for the simulator's API operations.

    Args:
        profile: ``"production"`` (the spec's limits) or ``"off"`` (nothing is limited).
        overrides: Values of this simulated environment that differ from the spec's, for any of the 17 groups
            (e.g. a low ``global`` for a test); part of the production profile, so ``DELETE /testdata/rate-limits``
            and ``POST /testdata/rate-limits/production`` restore them too.
    """

    def __init__(self, profile: str = "production", *, overrides: Mapping[str, WindowLimits] | None = None) -> None:
        if profile not in ("production", "off"):
            raise ConfigurationError(f"rate-limit profile must be 'production' or 'off', got {profile!r}")
        self._overrides = dict(overrides or {})
        for name, value in self._overrides.items():
            if name not in API_GROUPS:
                raise ConfigurationError(f"unknown rate-limit group {name!r}: expected one of {list(API_GROUPS)}")
            if not isinstance(value, WindowLimits):
                raise ConfigurationError(f"rate limits for group {name!r} must be WindowLimits, got {value!r}")
            SlidingWindowState(value, margin=0.0)  # rejects limits below 1
        self.enabled = profile == "production"
        self._limits: dict[str, WindowLimits] = _production_limits(self._overrides)
        self._states: dict[tuple[str, str], SlidingWindowState] = {}

    def effective(self) -> dict[str, WindowLimits]:
        """Limits in force per API group (what ``GET /rate-limits`` reports).

        With limiting off (profile ``off``) every window is reported unlimited (``-1`` on the wire), so a client
        whose limiter follows ``GET /rate-limits`` stops pacing too, instead of waiting for windows nobody counts.
        """
        if not self.enabled:
            return dict.fromkeys(API_GROUPS, WindowLimits(None))
        return {group: self._limits[group] for group in API_GROUPS}

    def set_limits(self, limits: Mapping[str, WindowLimits]) -> None:
        """Put custom limits in force for the given groups and switch limiting on."""
        for name, value in limits.items():
            group = ANONYMOUS_GROUP if name == _OLD_PUBLIC_NAME else name
            if group not in self._limits:
                raise ConfigurationError(f"unknown rate-limit group {group!r}")
            self._limits[group] = value
        self.enabled = True
        self._states.clear()

    def production(self) -> None:
        """Restore the spec's limits (with the constructor's overrides) and switch limiting on."""
        self._limits = _production_limits(self._overrides)
        self.enabled = True
        self._states.clear()

    def _state(self, key: tuple[str, str], limits: WindowLimits) -> SlidingWindowState:
        state = self._states.get(key)
        if state is None or state.limits != limits:
            state = SlidingWindowState(limits, margin=0.0)
            self._states[key] = state
        return state

    def admit_request(self, op: Operation, subject: str, now: float, *, ip: str | None = None) -> Refusal | None:
        """Count one request of ``op`` by ``subject`` (and, for ``global``, by the client address ``ip``) at ``now``.

        Args:
            op: The operation.
            subject: Who the group's counter belongs to: ``"<context type>:<value>"`` (counted per ``ip`` too), or
                ``"ip:<address>"`` for the ``anonymous`` operations.
            now: The (simulated) time.
            ip: The client's IP address; None counts nothing in ``global`` (no address known).

        Returns:
            None when admitted (counted in its group and ``global``), else the refusal (counted nowhere).
        """
        if not self.enabled:
            return None
        group = op.rate_group
        counter = f"{group}:{op.operation_id}" if group == "other" else group
        # KSeF counts per (context, IP address): processes of one context behind two addresses have two counters,
        # and every connection from one address shares one (the anonymous subject is the address already).
        owner = subject if ip is None or subject.startswith("ip:") else f"{subject}@{ip}"
        checks = [(group, self._state((owner, counter), self._limits.get(group, op.limits)))]
        if ip is not None and group != GLOBAL_GROUP:
            checks.append((GLOBAL_GROUP, self._state((f"ip:{ip}", GLOBAL_GROUP), self._limits[GLOBAL_GROUP])))
        refusals = [Refusal(name, wait) for name, state in checks if (wait := state.next_admission_time(now) - now) > 0]
        if refusals:
            return max(refusals, key=lambda refusal: refusal.wait)
        for _, state in checks:
            state.admit(now)
        return None

    def admit(self, op: Operation, subject: str, now: float, *, ip: str | None = None) -> float | None:
        """`admit_request` answering only the wait: ``None`` when admitted, else the seconds until a retry passes."""
        refusal = self.admit_request(op, subject, now, ip=ip)
        return None if refusal is None else refusal.wait

    @staticmethod
    def retry_after_seconds(wait: float) -> int:
        """``Retry-After`` as KSeF sends it: whole seconds, at least 1."""
        return max(1, math.ceil(wait))
