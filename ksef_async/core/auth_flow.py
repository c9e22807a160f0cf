"""The authentication state machine without I/O: token lifetimes, when to refresh or log in again, status codes.

The async layer (`ksef_async.auth`) asks `TokenState.decide` before each request that needs the access token
and does what it is told; every rule about time lives here and takes ``now`` from the caller's clock.
"""

from __future__ import annotations

import datetime as dt
import enum
import math

import attrs

from ksef_async.core.codes import AuthenticationStatus, is_final_failure
from ksef_async.errors import ConfigurationError

__all__ = [
    "AUTH_IN_PROGRESS",
    "AUTH_SUCCESS",
    "AuthStatus",
    "Token",
    "TokenAction",
    "TokenState",
    "classify_auth_status",
]

AUTH_IN_PROGRESS = 100
"""``GET /auth/{referenceNumber}`` status code: authentication still in progress."""
AUTH_SUCCESS = AuthenticationStatus.SUCCESS
"""``GET /auth/{referenceNumber}`` status code: authentication succeeded."""


class AuthStatus(enum.Enum):
    """What an authentication status code means for the poller."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"


def classify_auth_status(code: int) -> AuthStatus:
    """Classify a ``status.code`` of ``GET /auth/{referenceNumber}``.

    Codes below 200 keep the poller going, 2xx is success, and any code >= 300 is a terminal failure: the spec's
    table lists 415-550, while its examples also show 400 for a certificate error.
    """
    if code < AUTH_SUCCESS:
        return AuthStatus.PENDING
    if not is_final_failure(code):
        return AuthStatus.SUCCESS
    return AuthStatus.FAILED


@attrs.frozen
class Token:
    """A bearer token, the Unix time it stops being valid (from ``validUntil``) and when it was obtained."""

    value: str = attrs.field(repr=False)
    valid_until: float
    obtained_at: float | None = None

    @classmethod
    def from_api(cls, value: str, valid_until: dt.datetime, obtained_at: float | None = None) -> Token:
        """Build from the API's ``token`` and ``validUntil`` (a naive ``validUntil`` is taken as UTC)."""
        if valid_until.tzinfo is None:
            valid_until = valid_until.replace(tzinfo=dt.UTC)
        return cls(value, valid_until.timestamp(), obtained_at)

    def usable(self, now: float, margin: float) -> bool:
        """Whether the token is still valid ``margin`` seconds from ``now``.

        The margin never exceeds half the token's lifetime (when known): a server that issues tokens shorter than
        twice the margin must not make every call renew the token it has just received.
        """
        if self.obtained_at is not None:
            margin = min(margin, max(0.0, self.valid_until - self.obtained_at) / 2)
        return now + margin < self.valid_until


class TokenAction(enum.Enum):
    """What to do before sending a request that needs the access token."""

    USE = "use"
    """The access token is fresh enough: send it."""
    REFRESH = "refresh"
    """Refresh the access token with the refresh token first."""
    LOGIN = "login"
    """Log in from the start: there is no usable refresh token."""


def _margin(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


@attrs.define
class TokenState:
    """The tokens of one login and the rules for replacing them.

    Attributes:
        refresh_margin: Refresh the access token this many seconds before its ``validUntil`` (default 60 s: the
            access token lives about 15 minutes, and a request may spend a while queued in the rate limiter).
        access: The current access token, if any.
        refresh: The current refresh token, if any.
        generation: Increases by one whenever the access token is replaced; lets a caller that saw a 401 tell
            whether somebody else already replaced the token it used.
    """

    refresh_margin: float = attrs.field(default=60.0, validator=_margin)
    access: Token | None = None
    refresh: Token | None = None
    generation: int = 0

    def decide(self, now: float) -> TokenAction:
        """Return what to do before using the access token at ``now``."""
        if self.access is not None and self.access.usable(now, self.refresh_margin):
            return TokenAction.USE
        if self.refresh is not None and self.refresh.usable(now, self.refresh_margin):
            return TokenAction.REFRESH
        return TokenAction.LOGIN

    def after_401(self, used_generation: int, now: float) -> TokenAction:
        """Return what to do after a request with the token of ``used_generation`` was answered 401.

        If the token has been replaced since, the caller just retries with the new one; otherwise the token is
        dropped and must be refreshed (or, without a refresh token, obtained by a new login).
        """
        if used_generation != self.generation and self.access is not None:
            return TokenAction.USE
        self.access = None
        return self.decide(now)

    def set_tokens(self, access: Token, refresh: Token | None = None) -> None:
        """Store a new access token (and refresh token, after a redeem)."""
        self.access = access
        if refresh is not None:
            self.refresh = refresh
        self.generation += 1

    def clear(self) -> None:
        """Forget every token (after a logout)."""
        self.access = None
        self.refresh = None
        self.generation += 1
