"""Redaction of secrets (tokens, URL signatures) before anything reaches a log line, a repr or an exception.

The rules live in `ksef_async._redact`, below `ksef_async.errors` (which redacts server text with them), so that
errors imports nothing from `core`; this module is where the rest of the code imports them from.
"""

from __future__ import annotations

from ksef_async._redact import SECRET_QUERY_PARAMS, redact_secret, redact_server_text, redact_text, redact_url

__all__ = ["SECRET_QUERY_PARAMS", "redact_secret", "redact_server_text", "redact_text", "redact_url"]
