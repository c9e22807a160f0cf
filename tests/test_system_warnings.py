"""Unit tests of `ksef_async.core.system_warnings`: parsing ``X-System-Warning``, the log and the recorders."""

from __future__ import annotations

import datetime as dt
import gc

from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core.system_warnings import (
    MAX_HEADER_CHARS,
    MAX_WARNINGS_PER_HEADER,
    ParsedWarning,
    SystemWarning,
    SystemWarningLog,
    check_test_warning_text,
    parse_system_warning,
    warnings_from_header,
)

T0 = dt.datetime(2026, 10, 20, 12, 0, tzinfo=dt.UTC)


def event(code: str | None, message: str, raw: str = "raw", op: str = "get_rate_limits") -> SystemWarning:
    return SystemWarning(code, message, raw, op, T0)


def test_one_warning_of_the_spec_format() -> None:
    assert parse_system_warning("[test]: synthetic warning") == (ParsedWarning("test", "synthetic warning"),)


def test_many_warnings_split_on_the_bar_and_lose_surrounding_whitespace() -> None:
    value = "[W1]: planned maintenance on 2026-11-01 | [unicode-check]: disallowed characters in P_7 |[x]:  last  "
    assert parse_system_warning(value) == (
        ParsedWarning("W1", "planned maintenance on 2026-11-01"),
        ParsedWarning("unicode-check", "disallowed characters in P_7"),
        ParsedWarning("x", "last"),
    )


def test_codes_are_free_text_and_unknown_codes_are_normal() -> None:
    assert parse_system_warning("[A B-12.x]: m") == (ParsedWarning("A B-12.x", "m"),)
    assert parse_system_warning("[ 99 ]: m") == (ParsedWarning("99", "m"),)


def test_a_value_outside_the_format_is_kept_as_one_warning_without_code() -> None:
    assert parse_system_warning("  just text, no code  ") == (ParsedWarning(None, "just text, no code"),)
    assert parse_system_warning("[unterminated: text") == (ParsedWarning(None, "[unterminated: text"),)
    assert parse_system_warning("[code]:no-space") == (ParsedWarning(None, "[code]:no-space"),)
    assert parse_system_warning("[]: empty code") == (ParsedWarning(None, "[]: empty code"),)


def test_malformed_parts_next_to_good_ones_are_skipped() -> None:
    value = "garbage | [ok]: fine | [empty]:  | [also]: good"
    assert parse_system_warning(value) == (ParsedWarning("ok", "fine"), ParsedWarning("also", "good"))


def test_empty_and_blank_values_have_no_warning() -> None:
    assert parse_system_warning("") == ()
    assert parse_system_warning(" \t ") == ()


def test_the_number_of_warnings_and_the_parsed_length_are_bounded() -> None:
    many = " | ".join(f"[c{i}]: message {i}" for i in range(500))
    found = parse_system_warning(many)
    assert len(found) == MAX_WARNINGS_PER_HEADER
    assert found[-1] == ParsedWarning(f"c{MAX_WARNINGS_PER_HEADER - 1}", f"message {MAX_WARNINGS_PER_HEADER - 1}")
    huge = "[big]: " + "x" * (3 * MAX_HEADER_CHARS)
    (only,) = parse_system_warning(huge)
    assert only.code == "big"
    assert len(only.message) == MAX_HEADER_CHARS - len("[big]: ")


@given(st.text(max_size=300))
def test_parsing_any_text_never_fails_and_never_loses_a_non_blank_value(text: str) -> None:
    found = parse_system_warning(text)
    assert bool(found) == bool(text.strip())
    for item in found:
        assert item.message
        assert item.message == item.message.strip()
        assert "|" not in item.message or item.code is None


def test_events_carry_the_raw_value_operation_and_call_details() -> None:
    events = warnings_from_header(
        "[a]: one | [b]: two",
        operation="post_sessions_online",
        time=T0,
        method="POST",
        reference_number="20261020-SO-1",
    )
    assert [(e.code, e.message) for e in events] == [("a", "one"), ("b", "two")]
    assert {e.raw for e in events} == {"[a]: one | [b]: two"}
    assert events[0].operation == "post_sessions_online"
    assert events[0].method == "POST"
    assert events[0].reference_number == "20261020-SO-1"
    assert events[0].to_json()["time"] == T0.isoformat()


def test_the_log_counts_everything_and_reports_each_text_as_new_once() -> None:
    log = SystemWarningLog(history=3)
    assert log.record([event("a", "one", raw="[a]: one")], "[a]: one") is True
    assert log.record([event("a", "one", raw="[a]: one")], "[a]: one") is False
    assert log.record([event("b", "x"), event(None, "y")], "[b]: x | y") is True
    assert log.record([event("c", "z")], "[c]: z") is True
    assert log.total == len(log) == 5
    assert log.responses == 4
    assert log.by_code == {"a": 2, "b": 1, None: 1, "c": 1}
    assert [w.code for w in log.recent] == ["b", None, "c"]  # bounded history


def test_the_log_forgets_the_oldest_text_beyond_its_bound() -> None:
    log = SystemWarningLog(max_texts=2)
    for raw in ("one", "two", "three"):
        assert log.record([event(None, raw)], raw)
    assert log.record([event(None, "three")], "three") is False
    assert log.record([event(None, "one")], "one") is True  # forgotten, so logged again


def test_a_recorder_groups_repeats_and_keeps_counts_after_its_group_bound() -> None:
    log = SystemWarningLog()
    log.record([event("early", "before")], "before")
    recorder = log.recorder(max_distinct=2)
    for _ in range(3):
        log.record([event("a", "one")], "a")
    log.record([event("b", "two", op="post_sessions_batch")], "b")
    log.record([event("c", "three")], "c")
    recorder.close()
    log.record([event("a", "one")], "a")
    tallies = recorder.tallies()
    assert [(t.code, t.message, t.count) for t in tallies] == [("a", "one", 3), ("b", "two", 1)]
    assert recorder.total == 5
    assert recorder.overflow == 1
    assert tallies[1].to_json()["firstOperation"] == "post_sessions_batch"


def test_recorders_are_weakly_held_and_a_context_manager_closes_them() -> None:
    log = SystemWarningLog()
    with log.recorder() as recorder:
        log.record([event("a", "one")], "a")
    log.record([event("a", "one")], "a")
    assert recorder.total == 1
    assert recorder.closed
    log.recorder()
    gc.collect()
    assert len(log._recorders) == 1  # the dropped recorder is gone; ``recorder`` is still held


def test_test_warning_texts_are_checked() -> None:
    assert check_test_warning_text("[test]: synthetic warning") is None
    assert check_test_warning_text("") == "must not be empty"
    assert check_test_warning_text("  ") == "must not be empty"
    assert "printable ASCII" in (check_test_warning_text("a\r\nX-Injected: 1") or "")
    assert "printable ASCII" in (check_test_warning_text("zażółć") or "")
    assert "1024" in (check_test_warning_text("x" * 1025) or "")
