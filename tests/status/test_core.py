"""Unit tests of `ksef_async.core.status_service`: defensive parsing, de-duplication, outage windows, deadlines."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core.offline import emergency_deadline, offline_deadline
from ksef_async.core.status_service import (
    MAX_MESSAGES,
    MAX_TEXT,
    Message,
    OutageWindow,
    ServiceState,
    current_outage,
    dedupe_messages,
    outage_deadline,
    outage_windows,
    parse_datetime,
    parse_message,
    parse_messages,
    parse_status,
    upcoming_maintenance,
)

UTC = dt.UTC

# The TEST Latarnia's answer quoted in ksef-latarnia issue #34 (trimmed), as in the notes.
EXAMPLE: dict[str, Any] = {
    "status": "TOTAL_FAILURE",
    "messages": [
        {
            "id": "K/2026/AWR/02",
            "eventId": 1003,
            "category": "TOTAL_FAILURE",
            "type": "FAILURE_START",
            "title": "Wystąpiła całkowita awaria",
            "text": "Od godziny 13:27 31 stycznia trwa całkowita awaria...",
            "start": "2026-01-31T11:27:00+00:00",
            "end": None,
            "version": 1,
            "published": "2026-01-31T11:35:00+00:00",
        }
    ],
}


def _msg(ident: str, kind: str, *, event: int | None = 1, category: str = "FAILURE", version: int = 1,
         start: str | None = "2025-07-09T08:00:00+00:00", end: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"id": ident, "eventId": event, "category": category, "type": kind, "title": "t", "text": "x",
            "start": start, "end": end, "version": version, "published": start}  # fmt: skip


def test_example_from_the_test_service_parses() -> None:
    status = parse_status(EXAMPLE)
    assert status.state is ServiceState.TOTAL_FAILURE
    assert status.reason is None
    assert status.outage
    (message,) = status.messages
    assert message.id == "K/2026/AWR/02"
    assert message.event_id == 1003
    assert message.start == dt.datetime(2026, 1, 31, 11, 27, tzinfo=UTC)
    assert message.end is None
    assert message.published is not None
    assert message.published.tzinfo is not None
    assert "text" not in repr(message)


@pytest.mark.parametrize("value", ["AVAILABLE", "MAINTENANCE", "FAILURE", "TOTAL_FAILURE"])
def test_each_documented_state(value: str) -> None:
    status = parse_status({"status": value})
    assert status.state.value == value
    assert status.messages == ()
    assert status.outage is (value != "AVAILABLE")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"status": "DEGRADED"}, "unrecognised status 'DEGRADED'"),
        ({"status": None}, "the answer has no status"),
        ({}, "the answer has no status"),
        ({"status": 5}, "the answer has no status"),
        ([], "the answer is not a JSON object"),
        ("AVAILABLE", "the answer is not a JSON object"),
        ({"status": "available"}, "unrecognised status 'available'"),
    ],
)
def test_unknown_or_missing_status_is_unknown_never_available(raw: Any, reason: str) -> None:
    status = parse_status(raw)
    assert status.state is ServiceState.UNKNOWN
    assert status.reason == reason
    assert not status.outage


def test_unknown_category_and_type_are_kept() -> None:
    message = parse_message(_msg("A/1", "SOMETHING_NEW", category="PARTIAL"))
    assert message is not None
    assert (message.category, message.type) == ("PARTIAL", "SOMETHING_NEW")


def test_bad_fields_are_dropped_not_fatal() -> None:
    raw = {"id": "A/1", "eventId": "x", "version": -3, "start": "2026-01-31T11:27:00", "end": "garbage",
           "published": 12, "title": ["no"], "text": "y" * (MAX_TEXT + 50)}  # fmt: skip
    message = parse_message(raw)
    assert message is not None
    assert message.event_id is None
    assert message.version == 0
    assert message.start is None  # naive: unusable
    assert message.end is None
    assert message.published is None
    assert message.title is None
    assert message.text is not None
    assert len(message.text) == MAX_TEXT
    assert parse_message({"eventId": 1}) is None
    assert parse_message("K/1") is None


def test_message_list_is_bounded_and_skips_junk() -> None:
    raw = [_msg(f"A/{i}", "FAILURE_START", event=i) for i in range(MAX_MESSAGES + 20)]
    assert len(parse_messages(raw)) == MAX_MESSAGES
    assert parse_messages([1, None, {"id": ""}, _msg("B", "FAILURE_END")]) == (parse_message(_msg("B", "FAILURE_END")),)
    assert parse_messages({"id": "x"}) == ()
    assert parse_messages("abc") == ()


def test_datetime_parsing() -> None:
    assert parse_datetime("2026-01-31T11:27:00Z") == dt.datetime(2026, 1, 31, 11, 27, tzinfo=UTC)
    assert parse_datetime("2026-01-31T12:27:00+01:00") == dt.datetime(2026, 1, 31, 11, 27, tzinfo=UTC)
    assert parse_datetime("2026-01-31T11:27:00") is None
    assert parse_datetime("9" * 100) is None
    assert parse_datetime(None) is None


def test_dedupe_keeps_the_highest_version_per_id() -> None:
    messages = parse_messages([_msg("A", "FAILURE_START", version=1), _msg("A", "FAILURE_START", version=3),
                               _msg("A", "FAILURE_START", version=2), _msg("B", "FAILURE_END")])  # fmt: skip
    unique = dedupe_messages(messages)
    assert [(m.id, m.version) for m in unique] == [("A", 3), ("B", 1)]


def test_failure_window_joins_start_and_end_by_event_id() -> None:
    messages = parse_messages(
        [
            _msg("S", "FAILURE_START", event=7, start="2025-07-09T08:00:00+00:00"),
            _msg("E", "FAILURE_END", event=7, start="2025-07-09T08:00:00+00:00", end="2025-07-12T10:00:00+00:00"),
            _msg("other", "FAILURE_START", event=8, start="2025-07-20T08:00:00+00:00"),
        ]
    )
    first, second = outage_windows(messages)
    assert (first.event_id, first.category, sorted(first.message_ids)) == (7, "FAILURE", ["E", "S"])
    assert first.start == dt.datetime(2025, 7, 9, 8, tzinfo=UTC)
    assert first.end == dt.datetime(2025, 7, 12, 10, tzinfo=UTC)
    assert second.ongoing
    # The docs' worked example: a failure ending Sat 2025-07-12 gives Tue 2025-07-22.
    assert outage_deadline(first) == dt.date(2025, 7, 22) == emergency_deadline(dt.date(2025, 7, 12))
    assert outage_deadline(second) is None
    assert first.to_json()["sendDeadline"] == "2025-07-22"
    assert first.to_json()["offlineMode"] == "emergency"


def test_end_date_is_taken_in_warsaw_time() -> None:
    # 23:30 UTC on Thursday 2025-07-10 is already Friday in Warsaw.
    end = dt.datetime(2025, 7, 10, 23, 30, tzinfo=UTC)
    window = OutageWindow(1, "FAILURE", dt.datetime(2025, 7, 9, tzinfo=UTC), end)
    assert outage_deadline(window) == emergency_deadline(dt.date(2025, 7, 11)) == dt.date(2025, 7, 22)
    assert emergency_deadline(dt.date(2025, 7, 10)) == dt.date(2025, 7, 21)


def test_total_failure_needs_no_sending_and_maintenance_uses_offline_mode() -> None:
    start = dt.datetime(2025, 7, 9, tzinfo=UTC)
    end = dt.datetime(2025, 7, 10, 12, tzinfo=UTC)
    total = OutageWindow(1, "TOTAL_FAILURE", start, end)
    assert outage_deadline(total) is None
    assert "need not be sent" in total.to_json()["deadlineNote"]
    maintenance = OutageWindow(2, "MAINTENANCE", start, end)
    assert outage_deadline(maintenance) == offline_deadline(dt.date(2025, 7, 10)) == dt.date(2025, 7, 11)


def test_current_outage_and_upcoming_maintenance() -> None:
    messages = parse_messages(
        [
            _msg("M", "MAINTENANCE_ANNOUNCEMENT", event=3, category="MAINTENANCE",
                 start="2025-08-01T20:00:00+00:00", end="2025-08-01T23:00:00+00:00"),
            _msg("S", "FAILURE_START", event=4, start="2025-07-09T08:00:00+00:00"),
            _msg("junk", "FAILURE_START", event=None),
        ]
    )  # fmt: skip
    now = dt.datetime(2025, 7, 10, tzinfo=UTC)
    outage = current_outage(messages, now)
    assert outage is not None
    assert outage.event_id == 4
    (upcoming,) = upcoming_maintenance(messages, now)
    assert upcoming.event_id == 3
    assert upcoming_maintenance(messages, dt.datetime(2025, 8, 2, tzinfo=UTC)) == ()
    assert current_outage(messages, dt.datetime(2025, 7, 1, tzinfo=UTC)) is None


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=6),
                    max_leaves=30))  # fmt: skip
def test_parsing_never_raises(raw: Any) -> None:
    status = parse_status(raw)
    assert isinstance(status.state, ServiceState)
    assert all(isinstance(m, Message) for m in parse_messages(raw))
    if isinstance(raw, dict):
        outage_windows(parse_messages(raw.get("messages")))
