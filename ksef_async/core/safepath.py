"""Server-supplied names checked against their documented patterns before they become file names (no I/O)."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TypeVar

from ksef_async.core.identifiers import KSEF_NUMBER_RE
from ksef_async.core.redact import redact_text
from ksef_async.errors import ProtocolError

__all__ = ["FILE_NAME_RE", "checked_ksef_number", "checked_reference_number", "safe_join", "shown"]

P = TypeVar("P", bound=PurePath)

FILE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
"""A plain file name we are willing to create: one component, no separators, no leading dot, at most 200 chars."""
_REFERENCE_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{35}")
"""The spec's ``ReferenceNumber``: exactly 36 characters (KSeF's are ``YYYYMMDD-TT-HEX10-HEX10-CC``)."""
_SHOWN = 80


def shown(value: object) -> str:
    """``value`` as it may appear in a message: redacted, control characters escaped, its two ends if it is long."""
    text = redact_text(str(value))
    if len(text) > _SHOWN:  # keep both ends: a path's tail says as much as its head
        text = text[: _SHOWN // 2] + "..." + text[-(_SHOWN // 2) :]
    return repr(text)


def checked_ksef_number(value: object, *, source: str = "server") -> str:
    """Return ``value`` if it is a KSeF number (the spec's ``KsefNumber`` pattern), else raise.

    Raises:
        ProtocolError: ``value`` is not a string matching the pattern (e.g. ``../x`` or an absolute path).
    """
    if not isinstance(value, str) or KSEF_NUMBER_RE.fullmatch(value) is None:
        raise ProtocolError(f"{source}: {shown(value)} is not a KSeF number (KsefNumber pattern)")
    return value


def checked_reference_number(value: object, *, source: str = "server") -> str:
    """Return ``value`` if it is a reference number (spec ``ReferenceNumber``: 36 letters, digits, dashes), else raise.

    Raises:
        ProtocolError: ``value`` is not a string matching the pattern.
    """
    if not isinstance(value, str) or _REFERENCE_RE.fullmatch(value) is None:
        raise ProtocolError(f"{source}: {shown(value)} is not a reference number (ReferenceNumber pattern)")
    return value


def safe_join(directory: P, name: str) -> P:
    """Return ``directory / name`` after checking that ``name`` is one plain file name that stays inside it.

    Every writer builds its paths with this, whatever already validated ``name``: a name with a separator, a
    ``..``, a leading dot, a drive, a NUL or more than 200 characters never reaches the file system.

    Raises:
        ProtocolError: ``name`` is not a plain file name.
    """
    if not isinstance(name, str) or FILE_NAME_RE.fullmatch(name) is None or ".." in name:
        raise ProtocolError(f"{shown(name)} is not a safe file name: refusing to write it under {str(directory)!r}")
    path = directory / name
    if path.parent != directory or path.name != name:  # pragma: no cover - the pattern already excludes this
        raise ProtocolError(f"{shown(name)} leaves {str(directory)!r}")
    return path
