"""``X-KSeF-Feature``: the opt-in session features (e.g. ``subject-identifier-validation``) sent on session open."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ksef_async.errors import ConfigurationError

__all__ = ["FEATURE_HEADER", "SUBJECT_IDENTIFIER_VALIDATION", "check_features", "feature_headers"]

FEATURE_HEADER = "X-KSeF-Feature"
"""Request header of POST /sessions/online and POST /sessions/batch that switches on optional behaviour."""
SUBJECT_IDENTIFIER_VALIDATION = "subject-identifier-validation"
"""KSeF validates the NIP and internal identifiers of the parties named on each invoice of the session."""

# A feature is a lower-case token: no comma, space or control character can reach the header.
_FEATURE_RE = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
_MAX_LENGTH = 64


def check_features(features: Iterable[str], *, field: str = "features") -> tuple[str, ...]:
    """Return ``features`` as a tuple without repeats, in order.

    Raises:
        ConfigurationError: A value is not a lower-case token such as ``subject-identifier-validation``.
    """
    if isinstance(features, str):
        raise ConfigurationError(f"{field}: expected a list of feature names, got a string")
    out: list[str] = []
    for value in features:
        if not isinstance(value, str) or len(value) > _MAX_LENGTH or not _FEATURE_RE.fullmatch(value):
            raise ConfigurationError(
                f"{field}: {value!r} is not a feature name (lower-case letters, digits, '-' or '.'; "
                f"e.g. {SUBJECT_IDENTIFIER_VALIDATION!r})"
            )
        if value not in out:
            out.append(value)
    return tuple(out)


def feature_headers(configured: Iterable[str], extra: Iterable[str] | None = None) -> dict[str, str] | None:
    """The ``X-KSeF-Feature`` header for the client's ``configured`` features plus a session's ``extra`` ones.

    Returns:
        ``{"X-KSeF-Feature": "a, b"}``, or None when there is no feature.

    Raises:
        ConfigurationError: A feature name is malformed.
    """
    names = check_features([*configured, *check_features(extra or ())])
    return {FEATURE_HEADER: ", ".join(names)} if names else None
