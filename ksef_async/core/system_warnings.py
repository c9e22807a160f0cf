r"""``X-System-Warning`` values: the parser, the typed warning event and the bounded log that counts and records them.

KSeF may add ``X-System-Warning`` to any response (spec ``SystemWarning``): a non-blocking technical notice, ASCII
folded, formatted ``[code]: message | [code]: message``; one warning matches
``\\[(?<code>[^\\]]+)\\]: (?<message>[^|]+)``. The codes are not published (``CIRFMF/ksef-api`` #835), so every code is
accepted. A value that does not match the format at all is kept as one warning without a code: a warning is never
dropped because its text is odd.

Nothing here does I/O: the transport feeds `SystemWarningLog.record`, logs, and calls the application's callback.
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Self

import attrs

__all__ = [
    "MAX_HEADER_CHARS",
    "MAX_WARNINGS_PER_HEADER",
    "SYSTEM_WARNING_HEADER",
    "TEST_SYSTEM_WARNING_HEADER",
    "ParsedWarning",
    "SystemWarning",
    "SystemWarningHandler",
    "SystemWarningLog",
    "SystemWarningRecorder",
    "WarningTally",
    "check_test_warning_text",
    "parse_system_warning",
    "warnings_from_header",
]

SYSTEM_WARNING_HEADER = "X-System-Warning"
"""The response header KSeF uses for warnings."""

TEST_SYSTEM_WARNING_HEADER = "X-Test-System-Warning"
"""The request header that TEST echoes back as ``X-System-Warning`` (spec ``SystemWarning``)."""

MAX_HEADER_CHARS = 8192
"""Characters of a header value that are parsed; the rest is ignored (the raw value is kept up to this length)."""

MAX_WARNINGS_PER_HEADER = 64
"""Warnings taken from one header value; further ones are ignored (KSeF sends one or two)."""

_WARNING_RE = re.compile(r"\[(?P<code>[^\]]+)\]: (?P<message>[^|]+)")
_MAX_TEST_WARNING_CHARS = 1024


@attrs.frozen
class ParsedWarning:
    """One warning of a header value.

    Attributes:
        code: The bracketed code (unknown codes are normal), or None when the value did not follow the format.
        message: The message, surrounding whitespace removed.
    """

    code: str | None
    message: str


def parse_system_warning(value: str) -> tuple[ParsedWarning, ...]:
    """Split an ``X-System-Warning`` value into its warnings.

    Each ``[code]: message`` match of the spec's regex is one warning, code and message stripped of surrounding
    whitespace. A non-empty value without any match becomes one warning with ``code=None`` and the whole (stripped)
    text as its message. Only the first `MAX_HEADER_CHARS` characters and `MAX_WARNINGS_PER_HEADER` warnings are
    used.

    Args:
        value: The header value, as received.

    Returns:
        The warnings, in order; empty for an empty or blank value.
    """
    text = value[:MAX_HEADER_CHARS]
    found: list[ParsedWarning] = []
    for match in _WARNING_RE.finditer(text):
        code = match.group("code").strip()
        message = match.group("message").strip()
        if not code or not message:
            continue
        found.append(ParsedWarning(code, message))
        if len(found) >= MAX_WARNINGS_PER_HEADER:
            break
    if not found and text.strip():
        found.append(ParsedWarning(None, text.strip()))
    return tuple(found)


@attrs.frozen
class SystemWarning:
    """One warning KSeF sent, as handed to the application.

    Attributes:
        code: The warning code, or None when the header did not follow the ``[code]: message`` format.
        message: The warning text.
        raw: The whole header value it came from (a header may carry several warnings).
        operation: The operation id of the call (e.g. ``post_sessions_online``).
        time: When the response arrived (UTC).
        method: The HTTP method of the call.
        reference_number: The reference number the call was about, when it had one.
    """

    code: str | None
    message: str
    raw: str
    operation: str
    time: dt.datetime
    method: str | None = None
    reference_number: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "message": self.message,
            "raw": self.raw,
            "operation": self.operation,
            "time": self.time.isoformat(),
            "method": self.method,
            "referenceNumber": self.reference_number,
        }


def warnings_from_header(
    value: str,
    *,
    operation: str,
    time: dt.datetime,
    method: str | None = None,
    reference_number: str | None = None,
) -> tuple[SystemWarning, ...]:
    """Turn one ``X-System-Warning`` value into events (see `parse_system_warning`); ``raw`` is the parsed prefix."""
    raw = value[:MAX_HEADER_CHARS]
    return tuple(
        SystemWarning(item.code, item.message, raw, operation, time, method, reference_number)
        for item in parse_system_warning(raw)
    )


SystemWarningHandler = Callable[[SystemWarning], None]
"""The application's callback: called once per warning, on the event loop; it must not block."""


@attrs.frozen
class WarningTally:
    """One distinct warning (code and message) seen during a run, with how often.

    Attributes:
        code: The warning code (None: the header did not follow the format).
        message: The warning text.
        count: How many times it arrived.
        first: The first occurrence.
        last: The latest occurrence.
    """

    code: str | None
    message: str
    count: int
    first: SystemWarning
    last: SystemWarning

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "message": self.message,
            "count": self.count,
            "firstSeen": self.first.time.isoformat(),
            "lastSeen": self.last.time.isoformat(),
            "firstOperation": self.first.operation,
            "raw": self.first.raw,
        }


class SystemWarningRecorder:
    """Collects every warning that arrives while it is open: what a batch report or a sync summary shows.

    Warnings are grouped by (code, message): each group keeps its count and first and last occurrence, so
    nothing seen is dropped, however often a warning repeats. At most ``max_distinct`` groups are kept; warnings of
    further groups are still counted in `total` and `overflow`.
    """

    def __init__(self, max_distinct: int = 1000) -> None:
        self._max_distinct = max_distinct
        self._groups: dict[tuple[str | None, str], WarningTally] = {}
        self.total = 0
        """Warnings recorded."""
        self.overflow = 0
        """Warnings of groups beyond ``max_distinct`` (counted, not grouped)."""
        self.closed = False

    def __repr__(self) -> str:
        return f"SystemWarningRecorder(total={self.total}, distinct={len(self._groups)})"

    def add(self, warning: SystemWarning) -> None:
        """Record one warning (ignored once the recorder is closed)."""
        if self.closed:
            return
        self.total += 1
        key = (warning.code, warning.message)
        tally = self._groups.get(key)
        if tally is not None:
            self._groups[key] = attrs.evolve(tally, count=tally.count + 1, last=warning)
        elif len(self._groups) < self._max_distinct:
            self._groups[key] = WarningTally(warning.code, warning.message, 1, warning, warning)
        else:
            self.overflow += 1

    def close(self) -> None:
        """Stop recording; what was recorded stays readable."""
        self.closed = True

    def tallies(self) -> tuple[WarningTally, ...]:
        """The distinct warnings in order of first arrival."""
        return tuple(self._groups.values())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class SystemWarningLog:
    """The client's record of warnings: a counter, the latest ones, and the distinct texts already logged.

    Args:
        history: How many of the latest warnings `recent` keeps (default 100).
        max_texts: How many distinct header values are remembered for "log once per text" (default 1024; the
            oldest is forgotten first).
    """

    def __init__(self, history: int = 100, max_texts: int = 1024) -> None:
        self.recent: deque[SystemWarning] = deque(maxlen=history)
        """The latest warnings, oldest first."""
        self.total = 0
        """Warnings received since the client was created."""
        self.responses = 0
        """Responses that carried ``X-System-Warning``."""
        self.by_code: Counter[str | None] = Counter()
        """Warnings per code (None: not in the ``[code]: message`` format)."""
        self._texts: OrderedDict[str, None] = OrderedDict()
        self._max_texts = max_texts
        self._recorders: weakref.WeakSet[SystemWarningRecorder] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"SystemWarningLog(total={self.total}, responses={self.responses})"

    def __len__(self) -> int:
        return self.total

    def record(self, warnings: Iterable[SystemWarning], raw: str) -> bool:
        """Count the warnings of one response and hand them to the open recorders.

        Args:
            warnings: The warnings parsed from ``raw``.
            raw: The header value.

        Returns:
            True when ``raw`` was not seen before (the transport logs only then).
        """
        self.responses += 1
        for warning in warnings:
            self.total += 1
            self.by_code[warning.code] += 1
            self.recent.append(warning)
            for recorder in list(self._recorders):
                recorder.add(warning)
        if raw in self._texts:
            self._texts.move_to_end(raw)
            return False
        self._texts[raw] = None
        if len(self._texts) > self._max_texts:
            self._texts.popitem(last=False)
        return True

    def recorder(self, max_distinct: int = 1000) -> SystemWarningRecorder:
        """A new recorder that receives every warning from now until it is closed (or garbage-collected)."""
        recorder = SystemWarningRecorder(max_distinct)
        self._recorders.add(recorder)
        return recorder


def check_test_warning_text(text: str) -> str | None:
    """Why ``text`` cannot be sent as ``X-Test-System-Warning``, or None when it can.

    A header value must be printable ASCII (KSeF folds the echo to ASCII anyway), without line breaks, 1 to 1024
    characters.
    """
    if not text or not text.strip():
        return "must not be empty"
    if len(text) > _MAX_TEST_WARNING_CHARS:
        return f"must be at most {_MAX_TEST_WARNING_CHARS} characters"
    if any(not (" " <= ch <= "~") for ch in text):
        return "must be printable ASCII (no line breaks or control characters)"
    return None
