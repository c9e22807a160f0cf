"""What every handler shares: configuration, state, keys, limiter, faults, counters and signing helpers.

The signing helpers make JWT-shaped bearer tokens, pre-signed storage URLs and continuation tokens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ksef_async.core.identifiers import generate_ksef_number, generate_reference_number
from ksef_async.testing.simulator.contract import ContractChecker
from ksef_async.testing.simulator.faults import FaultInjector
from ksef_async.testing.simulator.keys import MfKeyring
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.ratelimits import RateLimiter
from ksef_async.testing.simulator.request_validation import RequestValidator
from ksef_async.testing.simulator.state import AuthOperation, SimState
from ksef_async.testing.simulator.status_service import StatusServiceScript

__all__ = ["RAW_BODY", "Counters", "Principal", "Runtime", "SimConfig"]

_SAS_VERSION = "2025-01-05"

RAW_BODY: web.RequestKey[bytes] = web.RequestKey("raw_body", bytes)
"""Where the pipeline keeps the request's raw body for handlers that need it (XAdES)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SimConfig:
    """Settings fixed when the simulator starts."""

    processing_delay: float = 0.0
    storage_delay: float = 0.0
    auth_delay: float = 0.0
    """Seconds an authentication operation shows status 100 before its outcome (simulated clock)."""
    access_token_lifetime: float = 900.0
    refresh_token_lifetime: float = 7 * 24 * 3600.0
    authentication_token_lifetime: float = 2700.0
    challenge_lifetime: float = 600.0
    token_timestamp_tolerance: float = 600.0
    """How far ``timestampMs`` in an encrypted KSeF token may be from the challenge's time."""
    part_upload_window: float = 20 * 60.0
    """Upload time per declared part: the window is ``parts x`` this (official docs ``sesja-wsadowa.md``)."""
    online_session_lifetime: float = 12 * 3600.0
    download_url_lifetime: float = 72 * 3600.0
    upo_page_size: int = 10_000
    max_invoices_per_session: int = 10_000
    environment_name: str | None = "środowisko testowe (TE)"
    """Suffix of the UPO's ``NazwaPodmiotuPrzyjmujacego`` (``None``: plain "Ministerstwo Finansów")."""
    spool_dir: Path | None = None
    forbidden_timestamp: bool = True
    """Put ``timestamp`` in 403 bodies; 2.9.0 made it optional (``ForbiddenProblemDetails``), so clients must cope."""
    system_warning: str | None = None
    """Sent as ``X-System-Warning`` on every API answer, errors included (may be changed while running)."""


@dataclass
class Counters:
    """What the simulator has seen, readable in tests as ``sim.counters``."""

    requests: Counter[str] = field(default_factory=Counter)
    """Requests per rate-limit group (``anonymous``: unauthenticated operations; ``storage``: uploads/downloads)."""
    operations: Counter[str] = field(default_factory=Counter)
    """API requests per operation id (``post_tokens``...), whatever the answer."""
    rate_limited: int = 0
    """429 answers sent."""
    system_warnings: int = 0
    """API answers that carried ``X-System-Warning``."""
    bytes_received: int = 0
    """Request body bytes received (API and storage)."""
    faults: dict[str, int] = field(default_factory=dict)
    """Faults injected per kind (a live view of the injector's counts)."""
    date_ranges: list[tuple[str, dt.datetime, dt.datetime]] = field(default_factory=list)
    """Each ``dateRange`` accepted by a metadata query (``query``) or an export (``export``): the kind, ``from``
    and ``to`` (``to`` as sent, or now when omitted) in UTC, before any clamping to the HWM."""


@dataclass
class Principal:
    """The caller behind a bearer token."""

    kind: str
    """``access``, ``refresh`` or ``authentication``."""
    operation: AuthOperation


DEFAULT_COLLECTIVE_MAX_INVOICES = 500
"""Default ``collectiveIdentifier.maxInvoices`` of a context (``GET /limits/context``'s example value)."""


class Runtime:
    """Shared services of one simulator instance."""

    def __init__(
        self,
        *,
        config: SimConfig,
        state: SimState,
        keys: MfKeyring,
        limiter: RateLimiter,
        faults: FaultInjector,
        contract: ContractChecker | None,
        spool_dir: Path,
        status_service: StatusServiceScript | None = None,
    ) -> None:
        self.config = config
        self.status_service = status_service or StatusServiceScript(state.clock.now_dt)
        """The scripted KSeF status service (Latarnia) served under ``/latarnia``."""
        self.state = state
        self.keys = keys
        self.limiter = limiter
        self.faults = faults
        self.contract = contract
        self.spool_dir = spool_dir
        self.counters = Counters(faults=faults.injected)
        self.internal_errors: list[str] = []
        """Unexpected exceptions in handlers or batch processing (simulator bugs), as ``"METHOD path: error"``."""
        self.request_validator: RequestValidator | None = RequestValidator()
        """Checks every API request against the spec before its handler runs (None only to measure its cost)."""
        self.background: set[asyncio.Task[None]] = set()
        """Running batch-processing tasks (kept referenced until done)."""
        self.public_url = ""
        """Scheme, host and port of the URLs handed out (set when the server is bound)."""

    # -- per-context limits ---------------------------------------------------------------------------------------

    def context_limits(self, context: tuple[str, str]) -> dict[str, dict[str, int]]:
        """``EffectiveContextLimits`` of ``context``: the ``/testdata/limits/context/session`` override or defaults."""
        session_default = {
            "maxInvoiceSizeInMB": 1,
            "maxInvoiceWithAttachmentSizeInMB": 3,
            "maxInvoices": self.config.max_invoices_per_session,
        }
        defaults = {
            "onlineSession": session_default,
            "batchSession": session_default,
            "collectiveIdentifier": {"maxInvoices": DEFAULT_COLLECTIVE_MAX_INVOICES},
        }
        override = self.state.session_limits.get(context, {})
        return {kind: dict(override.get(kind, default)) for kind, default in defaults.items()}

    def max_invoices(self, context: tuple[str, str], kind: str) -> int:
        """``maxInvoices`` of ``kind`` (``onlineSession``, ``batchSession`` or ``collectiveIdentifier``)."""
        return self.context_limits(context)[kind]["maxInvoices"]

    # -- identifiers -----------------------------------------------------------------------------------------

    def reference(self, kind: str) -> str:
        """A fresh reference number of type ``kind`` (``SO``, ``EE``, ``AU``...) dated today."""
        return generate_reference_number(kind, self.state.clock.now_dt().date(), self.state.rng)

    def ksef_number(self, seller_nip: str, day: dt.date) -> str:
        """A fresh KSeF number for ``seller_nip`` with a valid CRC-8."""
        return generate_ksef_number(seller_nip, day, self.state.rng)

    # -- JWT-shaped bearer tokens --------------------------------------------------------------------------------

    def _sign(self, purpose: str, message: bytes) -> bytes:
        return hmac.new(self.state.secret, purpose.encode() + b"\x00" + message, hashlib.sha256).digest()

    def issue_token(self, kind: str, operation: AuthOperation, lifetime: float) -> tuple[str, dt.datetime]:
        """Issue a JWT-shaped token of ``kind`` for ``operation``; return it and its expiry."""
        now = self.state.clock.now()
        exp = now + lifetime
        header = {"alg": "HS256", "typ": "JWT"}
        token_type = {"authentication": "OperationToken", "access": "ContextToken", "refresh": "RefreshToken"}[kind]
        payload = {
            "token-type": token_type,
            "kind": kind,
            "ref": operation.reference_number,
            "jti": _b64url(self.state.rng.randbytes(12)),
            "context-identifier-type": operation.context[0],
            "context-identifier-value": operation.context[1],
            "authentication-method": operation.method,
            "iat": int(now),
            "exp": int(exp),
            "iss": "ksef-api-ti",
            "aud": "ksef-api-ti",
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(payload, separators=(",", ":")).encode())
        )
        signature = _b64url(self._sign("jwt", signing_input.encode()))
        return f"{signing_input}.{signature}", dt.datetime.fromtimestamp(int(exp), dt.UTC)

    def verify_token(self, token: str) -> dict[str, Any] | None:
        """Return the payload of a token this simulator issued and that has not expired, else ``None``."""
        parts = token.split(".")
        if len(parts) != 3:  # noqa: PLR2004
            return None
        expected = _b64url(self._sign("jwt", f"{parts[0]}.{parts[1]}".encode()))
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            payload: dict[str, Any] = json.loads(_b64url_decode(parts[1]))
        except (ValueError, binascii.Error):
            return None
        if payload.get("exp", 0) <= self.state.clock.now():
            return None
        return payload

    # -- pre-signed storage URLs ---------------------------------------------------------------------------------

    def sign_url(self, path: str, permission: str, expires: float) -> str:
        """A pre-signed URL for ``path`` under the storage prefix, Azure-SAS shaped (``sv, se, sr, sp, sig``)."""
        se = dt.datetime.fromtimestamp(int(expires), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        sig = base64.b64encode(self._sign("sas", f"{path}\n{se}\n{permission}".encode())).decode()
        query = urllib.parse.urlencode({"sv": _SAS_VERSION, "se": se, "sr": "b", "sp": permission, "sig": sig})
        return f"{self.public_url}{path}?{query}"

    def check_url(self, path: str, query: Any, permission: str) -> str | None:
        """Return why a pre-signed request is refused (``None`` when the signature is good and not expired)."""
        se = query.get("se")
        sig = query.get("sig")
        if query.get("sp") != permission or not se or not sig:
            return "AuthenticationFailed: signature fields missing"
        expected = base64.b64encode(self._sign("sas", f"{path}\n{se}\n{permission}".encode())).decode()
        if not hmac.compare_digest(expected, sig):
            return "AuthenticationFailed: signature mismatch"
        try:
            expiry = dt.datetime.strptime(se, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return "AuthenticationFailed: bad expiry"
        if self.state.clock.now() > expiry.timestamp():
            return "AuthenticationFailed: Signed expiry time has passed"
        return None

    # -- continuation tokens -------------------------------------------------------------------------------------

    def continuation(self, scope: str, offset: int) -> str:
        """An opaque continuation token for ``offset`` in the listing ``scope``."""
        body = f"{scope}|{offset}"
        return _b64url(body.encode()) + "." + _b64url(self._sign("page", body.encode())[:12])

    def parse_continuation(self, scope: str, token: str | None) -> int:
        """The offset a continuation token stands for (0 without one); 400 21418 for a bad token."""
        if not token:
            return 0
        try:
            encoded, mac = token.split(".")
            body = _b64url_decode(encoded).decode()
            ok = hmac.compare_digest(_b64url(self._sign("page", body.encode())[:12]), mac)
            token_scope, offset = body.rsplit("|", 1)
            if ok and token_scope == scope:
                return int(offset)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            pass
        raise ApiFailure(400, 21418, "Przekazany token kontynuacji ma nieprawidłowy format.")
