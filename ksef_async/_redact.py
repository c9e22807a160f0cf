"""Redaction of secrets (tokens, URL signatures) before anything reaches a log line, a repr or an exception.

The lowest layer (below `ksef_async.errors`, which redacts server text with it); import it as
`ksef_async.core.redact`, its public home.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["SECRET_QUERY_PARAMS", "redact_secret", "redact_server_text", "redact_text", "redact_url"]

# Query parameters of pre-signed (SAS) URLs that grant access; the rest (expiry, permissions) is harmless.
SECRET_QUERY_PARAMS = frozenset({"sig", "signature", "token", "x-amz-signature", "code"})
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")
_SIG_RE = re.compile(r"(?i)([?&](?:sig|signature|token)=)[^&\s\"']+")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
# A KSeF token is "<reference>|<context>|<64 hex>": the hex secret is what grants access.
_KSEF_TOKEN_SECRET_RE = re.compile(r"(\|)[0-9A-Fa-f]{32,}")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x1b]")


def redact_secret(value: str | None) -> str:
    """Show only that a secret exists, never any of its characters."""
    return "<redacted>" if value else "<none>"


def redact_url(url: str) -> str:
    """Return ``url`` with the values of signature-bearing query parameters replaced."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [
        (k, "REDACTED" if k.lower() in SECRET_QUERY_PARAMS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/:")))


def redact_text(text: str) -> str:
    """Remove JWTs, bearer credentials and URL signatures from free text (messages, bodies)."""
    text = _JWT_RE.sub("<redacted-jwt>", text)
    text = _SIG_RE.sub(r"\1REDACTED", text)
    text = _KSEF_TOKEN_SECRET_RE.sub(r"\1<redacted>", text)
    return _BEARER_RE.sub(r"\1<redacted>", text)


def redact_server_text(text: str, *, limit: int = 500) -> str:
    """Make server-supplied free text fit for an exception, a log line or a report.

    Secrets are removed (`redact_text`) before the text is shortened to ``limit`` characters (so no cut secret
    survives), and terminal control characters are replaced, so an echoed body cannot repaint a terminal.
    """
    cleaned = _CONTROL_RE.sub("?", redact_text(text))
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."
