"""The KSeF status service ("Latarnia") as values: parse its answers and derive outage windows and deadlines.

Latarnia (``GET /status``, ``GET /messages``; no auth) is MF's public status and announcement service, separate
from the KSeF API. Its answers are untrusted: an unknown or missing ``status`` is `ServiceState.UNKNOWN` (never
``AVAILABLE``, never a failure), unknown ``category``/``type`` values are kept as received, text fields and lists
are truncated to fixed sizes, and every date-time is aware (one without an offset is dropped: unusable).

Only an announced ``FAILURE``/``TOTAL_FAILURE`` starts the emergency-mode clock: its ``start``, and later the
``end`` of the message with the same ``eventId`` (notes section 5). The TEST Latarnia is a stub (a fixed, stale
``TOTAL_FAILURE``), so nothing here decides on offline mode: it only reports.
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ksef_async.core.offline import OfflineMode, send_deadline

__all__ = [
    "MAX_MESSAGES",
    "MAX_TEXT",
    "OUTAGE_STATES",
    "Message",
    "OutageWindow",
    "ServiceState",
    "ServiceStatus",
    "current_outage",
    "dedupe_messages",
    "outage_deadline",
    "outage_windows",
    "parse_datetime",
    "parse_message",
    "parse_messages",
    "parse_status",
    "upcoming_maintenance",
]

MAX_MESSAGES = 200
"""At most this many messages are kept from one answer (the rest are dropped)."""
MAX_TEXT = 4000
"""Longest ``text`` kept (characters); ``title``/``id``/``category``/``type`` are cut to 200."""
_MAX_SHORT = 200
_WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")


class ServiceState(enum.StrEnum):
    """What Latarnia says about KSeF, plus ``UNKNOWN`` (unreachable, an error or an unreadable answer)."""

    AVAILABLE = "AVAILABLE"
    MAINTENANCE = "MAINTENANCE"
    FAILURE = "FAILURE"
    TOTAL_FAILURE = "TOTAL_FAILURE"
    UNKNOWN = "UNKNOWN"


OUTAGE_STATES = frozenset({ServiceState.MAINTENANCE, ServiceState.FAILURE, ServiceState.TOTAL_FAILURE})
"""States in which KSeF is announced as unavailable (worth waiting for, not worth retrying against)."""

_FAILURE_CATEGORIES = frozenset({"FAILURE", "TOTAL_FAILURE"})


def _short(value: Any, limit: int = _MAX_SHORT) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value) if isinstance(value, int | float) else None
    return None if text is None else text[:limit]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:  # noqa: PLR2004
        return int(value)
    return None


def parse_datetime(value: Any) -> dt.datetime | None:
    """An aware datetime from an ISO 8601 string (``Z`` accepted); ``None`` when missing, naive or unreadable."""
    if not isinstance(value, str) or len(value) > 64:  # noqa: PLR2004 - a date-time is short
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@attrs.frozen
class Message:
    """One Latarnia announcement.

    Attributes:
        id: e.g. ``K/2026/AWR/02``.
        event_id: ``eventId``: links the messages of one event (a failure's start and end).
        category: ``FAILURE``, ``TOTAL_FAILURE``, ``MAINTENANCE`` (or an unknown value, kept).
        type: ``FAILURE_START``, ``FAILURE_END``, ``MAINTENANCE_ANNOUNCEMENT`` (or an unknown value, kept).
        title: Short title (Polish).
        text: Body (Polish), at most `MAX_TEXT` characters.
        start: When the event starts (aware).
        end: When it ends (aware), ``None`` while unknown.
        version: Revision of the message (de-duplicate by ``id`` and ``version``).
        published: When it was published (aware).
    """

    id: str
    event_id: int | None = None
    category: str | None = None
    type: str | None = None
    title: str | None = None
    text: str | None = attrs.field(default=None, repr=False)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    version: int = 0
    published: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The message with Latarnia's field names."""
        return {
            "id": self.id,
            "eventId": self.event_id,
            "category": self.category,
            "type": self.type,
            "title": self.title,
            "text": self.text,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "version": self.version,
            "published": None if self.published is None else self.published.isoformat(),
        }


@attrs.frozen
class ServiceStatus:
    """An answer of ``GET /status`` (or the reason there is none).

    Attributes:
        state: The state; `ServiceState.UNKNOWN` when Latarnia could not be asked or answered nonsense.
        messages: The messages attached to the status (absent when ``AVAILABLE``).
        reason: Why the state is ``UNKNOWN`` (or an unrecognised raw value), else ``None``.
        raw_status: The ``status`` value as received (cut to 200 characters).
    """

    state: ServiceState
    messages: tuple[Message, ...] = ()
    reason: str | None = None
    raw_status: str | None = None

    @classmethod
    def unknown(cls, reason: str) -> ServiceStatus:
        """``UNKNOWN`` with ``reason`` (e.g. ``"connection refused"``, ``"HTTP 502"``)."""
        return cls(ServiceState.UNKNOWN, (), reason[:_MAX_SHORT])

    @property
    def outage(self) -> bool:
        """KSeF is announced as unavailable (maintenance, failure or total failure in progress)."""
        return self.state in OUTAGE_STATES

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "status": self.state.value,
            "reason": self.reason,
            "messages": [m.to_json() for m in self.messages],
        }


def parse_message(raw: Any) -> Message | None:
    """One message from its JSON object; ``None`` when it is not an object or has no usable ``id``."""
    if not isinstance(raw, Mapping):
        return None
    ident = _short(raw.get("id"))
    if not ident:
        return None
    return Message(
        id=ident,
        event_id=_int(raw.get("eventId")),
        category=_short(raw.get("category")),
        type=_short(raw.get("type")),
        title=_short(raw.get("title")),
        text=_short(raw.get("text"), MAX_TEXT),
        start=parse_datetime(raw.get("start")),
        end=parse_datetime(raw.get("end")),
        version=max(_int(raw.get("version")) or 0, 0),
        published=parse_datetime(raw.get("published")),
    )


def parse_messages(raw: Any) -> tuple[Message, ...]:
    """The messages of a ``GET /messages`` answer (a list); unusable items are skipped, at most `MAX_MESSAGES`."""
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        return ()
    out: list[Message] = []
    for item in raw[:MAX_MESSAGES]:
        message = parse_message(item)
        if message is not None:
            out.append(message)
    return tuple(out)


def parse_status(raw: Any) -> ServiceStatus:
    """A ``GET /status`` answer; a missing, non-string or unknown ``status`` gives `ServiceState.UNKNOWN`."""
    if not isinstance(raw, Mapping):
        return ServiceStatus.unknown("the answer is not a JSON object")
    value = raw.get("status")
    messages = parse_messages(raw.get("messages"))
    if not isinstance(value, str):
        return ServiceStatus(ServiceState.UNKNOWN, messages, "the answer has no status")
    shown = value[:_MAX_SHORT]
    try:
        state = ServiceState(value)
    except ValueError:
        return ServiceStatus(ServiceState.UNKNOWN, messages, f"unrecognised status {shown!r}", shown)
    if state is ServiceState.UNKNOWN:
        return ServiceStatus(state, messages, "the service itself says UNKNOWN", shown)
    return ServiceStatus(state, messages, None, shown)


def dedupe_messages(messages: Iterable[Message]) -> tuple[Message, ...]:
    """One message per ``id``: its highest ``version`` (Latarnia has no "since" filter), in publication order."""
    best: dict[str, Message] = {}
    for message in messages:
        held = best.get(message.id)
        if held is None or message.version > held.version:
            best[message.id] = message
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return tuple(sorted(best.values(), key=lambda m: (m.published or m.start or epoch, m.id)))


@attrs.frozen
class OutageWindow:
    """An announced failure (or maintenance) of KSeF: from ``start`` to ``end`` (``None``: still going on).

    Attributes:
        event_id: The ``eventId`` linking its messages.
        category: ``FAILURE``, ``TOTAL_FAILURE`` or ``MAINTENANCE``.
        start: When it started.
        end: When it ended (from the ``FAILURE_END`` of the same event, or the message's own ``end``).
        message_ids: The ids of the messages it was built from.
    """

    event_id: int | None
    category: str
    start: dt.datetime | None
    end: dt.datetime | None = None
    message_ids: tuple[str, ...] = ()

    @property
    def ongoing(self) -> bool:
        """No end has been announced yet."""
        return self.end is None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the offline deadline that applies to invoices issued during it."""
        deadline = outage_deadline(self)
        return {
            "eventId": self.event_id,
            "category": self.category,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "messages": list(self.message_ids),
            "offlineMode": _mode_of(self.category).value,
            "sendDeadline": None if deadline is None else deadline.isoformat(),
            "deadlineNote": _deadline_note(self, deadline),
        }


def _mode_of(category: str) -> OfflineMode:
    return OfflineMode.OFFLINE if category == "MAINTENANCE" else OfflineMode.EMERGENCY


def _deadline_note(window: OutageWindow, deadline: dt.date | None) -> str:
    if window.category == "TOTAL_FAILURE":
        return "total failure: invoices issued during it need not be sent to KSeF"
    if deadline is None:
        return "the end is not announced yet: the deadline counts from it"
    if window.category == "MAINTENANCE":
        return "offline mode: the next business day after the unavailability ends"
    return "emergency mode: 7 business days after the failure ends (restarts on a new failure notice)"


def outage_windows(messages: Iterable[Message]) -> tuple[OutageWindow, ...]:
    """The failures and maintenance periods the messages announce, one per event, oldest first.

    A failure's window starts at the ``start`` of its ``FAILURE_START`` and ends at the ``end`` (else ``start``)
    of the ``FAILURE_END`` with the same ``eventId``. A ``MAINTENANCE_ANNOUNCEMENT`` is its own window. Messages
    of other types, or failures without an ``eventId`` or ``start``, are ignored.
    """
    events: dict[tuple[str, int | str], dict[str, Any]] = {}
    for message in dedupe_messages(messages):
        kind = message.type
        if kind == "MAINTENANCE_ANNOUNCEMENT":
            key: tuple[str, int | str] = ("m", message.event_id if message.event_id is not None else message.id)
            events[key] = {
                "event": message.event_id,
                "category": "MAINTENANCE",
                "start": message.start,
                "end": message.end,
                "ids": [message.id],
            }
        elif kind in {"FAILURE_START", "FAILURE_END"} and message.event_id is not None:
            slot = events.setdefault(
                ("f", message.event_id),
                {"event": message.event_id, "category": None, "start": None, "end": None, "ids": []},
            )
            slot["ids"].append(message.id)
            if message.category in _FAILURE_CATEGORIES and slot["category"] != "TOTAL_FAILURE":
                slot["category"] = message.category
            if kind == "FAILURE_START":
                slot["start"] = message.start or slot["start"]
                slot["end"] = slot["end"] or message.end
            else:
                slot["end"] = message.end or message.start
                slot["start"] = slot["start"] or message.start
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    windows = [
        OutageWindow(e["event"], e["category"] or "FAILURE", e["start"], e["end"], tuple(e["ids"]))
        for e in events.values()
        if e["start"] is not None
    ]
    return tuple(sorted(windows, key=lambda w: (w.start or epoch, w.category)))


def current_outage(messages: Iterable[Message], now: dt.datetime) -> OutageWindow | None:
    """The failure or maintenance going on at ``now`` (started, not ended), the latest one if several."""
    going = [
        w for w in outage_windows(messages) if w.start is not None and w.start <= now and (w.end is None or w.end > now)
    ]
    return going[-1] if going else None


def upcoming_maintenance(messages: Iterable[Message], now: dt.datetime) -> tuple[OutageWindow, ...]:
    """Announced maintenance periods that have not started by ``now``, soonest first."""
    return tuple(
        w for w in outage_windows(messages) if w.category == "MAINTENANCE" and w.start is not None and w.start > now
    )


def outage_deadline(window: OutageWindow) -> dt.date | None:
    """Last day to send invoices issued offline during ``window`` (`ksef_async.core.offline.send_deadline`).

    Failure: emergency mode, 7 business days after the day (Warsaw time) it ended. Maintenance: offline mode, the
    next business day after it ended. ``None`` when the end is not announced yet, or for a total failure (nothing
    has to be sent).
    """
    if window.end is None or window.category == "TOTAL_FAILURE":
        return None
    return send_deadline(_mode_of(window.category), window.end.astimezone(_WARSAW).date())
