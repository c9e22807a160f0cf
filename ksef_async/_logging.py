"""The ``ksef_async`` logger tree and the one helper that builds redacted, structured log extras.

Every record of a logger from `get_logger` carries its fields as attributes prefixed ``ksef_`` (see `extras`) and
``ksef_context``: the KSeF context (``Nip:5265877635``) of the client most recently opened in the current task (a
`contextvars.ContextVar`, so concurrent tasks keep theirs). `JsonLinesFormatter` writes a record and those fields
as one JSON object per line (the CLI's ``--log-json FILE``).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from typing import Any, Final

from ksef_async.core.redact import redact_text, redact_url

__all__ = ["ROOT_LOGGER", "JsonLinesFormatter", "bind_log_context", "extras", "get_logger"]

_CONTEXT: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar("ksef_async_log_context", default=None)


def bind_log_context(context: str | None) -> None:
    """Make ``context`` (e.g. ``Nip:5265877635``) the ``ksef_context`` of later records in this task."""
    _CONTEXT.set(context)


class _ContextFilter(logging.Filter):
    """Adds ``ksef_context`` to every record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "ksef_context"):
            record.ksef_context = _CONTEXT.get()
        return True


_FILTER: Final = _ContextFilter()

ROOT_LOGGER = "ksef_async"
"""Name of the package's root logger; areas log to children such as ``ksef_async.transport``."""

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())


def get_logger(area: str) -> logging.Logger:
    """Return the logger of one area (``transport``, ``auth``, ``online`` ...) under ``ksef_async``."""
    logger = logging.getLogger(f"{ROOT_LOGGER}.{area}")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


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


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, and every ``ksef_`` field.

    The fields are already redacted by `extras`; the message is the formatted text of the log call.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON."""
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key.startswith("ksef_") and value is not None:
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, ensure_ascii=False, sort_keys=True)
