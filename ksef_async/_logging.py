"""The ``ksef_async`` logger tree and the one helper that builds redacted, structured log extras."""

from __future__ import annotations

import logging
from typing import Any

from ksef_async.core.redact import redact_text, redact_url

__all__ = ["ROOT_LOGGER", "extras", "get_logger"]

ROOT_LOGGER = "ksef_async"
"""Name of the package's root logger; areas log to children such as ``ksef_async.transport``."""

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())


def get_logger(area: str) -> logging.Logger:
    """Return the logger of one area (``transport``, ``auth``, ``online`` ...) under ``ksef_async``."""
    return logging.getLogger(f"{ROOT_LOGGER}.{area}")


def extras(**values: Any) -> dict[str, Any]:
    """Build ``extra=`` for a log call: drops ``None`` values, redacts ``url`` and free-text values.

    Keys are prefixed with ``ksef_`` so they never collide with `logging.LogRecord` attributes (``ksef_operation``,
    ``ksef_group``, ``ksef_reference_number``, ``ksef_waited`` ...).
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        shown = value
        if key == "url":
            shown = redact_url(str(value))
        elif isinstance(value, str):
            shown = redact_text(value)
        out[f"ksef_{key}"] = shown
    return out
