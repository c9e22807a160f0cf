"""The HWM sync decisions, table-driven: every phase x event, the windows, the checkpoint moves, budget and 21182."""

from __future__ import annotations

import datetime as dt
import itertools

import attrs
import pytest

from ksef_async.core.sync_machine import (
    Busy,
    Event,
    Export,
    Exported,
    Next,
    NothingNew,
    Phase,
    SaveCheckpoint,
    Stop,
    StopReason,
    SubjectSync,
    SyncTransitionError,
    Wait,
    step,
)
from ksef_async.errors import IntegrityError, ProtocolError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=3)
LONG_AGO = T0 - dt.timedelta(days=300)
# The first window from LONG_AGO: 100 days in UTC, minus the one-minute margin.
LONG_AGO_TO = LONG_AGO + dt.timedelta(days=100) - dt.timedelta(minutes=1)
HWM = T0 + dt.timedelta(days=2)
LAST = T0 + dt.timedelta(days=1)

ready = SubjectSync("Subject2", T0, budget=5, busy_wait=30.0, busy_retries=2)
exporting_to_present = attrs.evolve(ready, phase=Phase.EXPORTING, window_to=None)
exporting_old_window = attrs.evolve(ready, checkpoint=LONG_AGO, phase=Phase.EXPORTING, window_to=LONG_AGO_TO)
done = attrs.evolve(ready, phase=Phase.DONE, stop=StopReason.HWM)

EVENTS: dict[str, Event] = {
    "next": Next(NOW),
    "whole": Exported(False, None, HWM),
    "truncated": Exported(True, LAST, HWM),
    "420": NothingNew(accepted=True),
    "21182": Busy(),
}
STATES = {"ready": ready, "exporting": exporting_to_present, "done": done}

# phase x event -> (phase, checkpoint, budget, commands); None: the event cannot happen in that phase.
TABLE: dict[tuple[str, str], tuple[Phase, dt.datetime, int | None, tuple[object, ...]] | None] = {
    ("ready", "next"): (Phase.EXPORTING, T0, 5, (Export(T0, None),)),
    ("ready", "whole"): None,
    ("ready", "truncated"): None,
    ("ready", "420"): None,
    ("ready", "21182"): None,
    ("exporting", "next"): None,
    ("exporting", "whole"): (Phase.DONE, HWM, 4, (SaveCheckpoint(HWM), Stop(StopReason.HWM))),
    ("exporting", "truncated"): (Phase.READY, LAST, 4, (SaveCheckpoint(LAST),)),
    ("exporting", "420"): (Phase.DONE, T0, 4, (Stop(StopReason.UP_TO_DATE),)),
    ("exporting", "21182"): (Phase.READY, T0, 5, (Wait(30.0),)),
    ("done", "next"): None,
    ("done", "whole"): None,
    ("done", "truncated"): None,
    ("done", "420"): None,
    ("done", "21182"): None,
}


def test_the_table_covers_every_phase_and_event() -> None:
    assert set(TABLE) == set(itertools.product(STATES, EVENTS))
    assert {s.phase for s in STATES.values()} == set(Phase)


@pytest.mark.parametrize(("state_name", "event_name"), list(TABLE))
def test_step(state_name: str, event_name: str) -> None:
    state, event = STATES[state_name], EVENTS[event_name]
    expected = TABLE[state_name, event_name]
    if expected is None:
        with pytest.raises(SyncTransitionError, match=state.phase.value):
            step(state, event)
        return
    after, commands = step(state, event)
    assert (after.phase, after.checkpoint, after.budget, commands) == expected


def test_an_old_checkpoint_is_walked_in_100_day_windows_until_the_hwm() -> None:
    state = attrs.evolve(ready, checkpoint=LONG_AGO, budget=None)
    state, commands = step(state, Next(NOW))
    assert commands == (Export(LONG_AGO, LONG_AGO_TO),)
    # A whole package whose HWM is the window's end (to the millisecond): the window is done, not the sync.
    state, commands = step(state, Exported(False, None, LONG_AGO_TO))
    assert state.phase is Phase.READY
    assert commands == (SaveCheckpoint(LONG_AGO_TO),)
    state, commands = step(state, Next(NOW))
    assert commands == (Export(LONG_AGO_TO, LONG_AGO_TO + dt.timedelta(days=100) - dt.timedelta(minutes=1)),)
    # A whole package ending well below the window's end: the HWM is reached.
    state, commands = step(state, Exported(False, None, LONG_AGO_TO + dt.timedelta(days=5)))
    assert state.phase is Phase.DONE
    assert state.stop is StopReason.HWM


def test_window_end_is_cut_to_milliseconds() -> None:
    state = attrs.evolve(ready, checkpoint=LONG_AGO + dt.timedelta(microseconds=123_456))
    _, commands = step(state, Next(NOW))
    (export,) = commands
    assert isinstance(export, Export)
    assert export.to is not None
    assert export.to.microsecond == 123_000


def test_a_package_that_does_not_advance_saves_nothing() -> None:
    state = attrs.evolve(exporting_to_present, checkpoint=HWM)
    after, commands = step(state, Exported(False, None, HWM))
    assert commands == (Stop(StopReason.HWM),)
    assert after.checkpoint == HWM


@pytest.mark.parametrize(
    ("event", "match"),
    [
        (Exported(True, None, HWM), "without lastPermanentStorageDate"),
        (Exported(True, T0, HWM), "cannot advance"),
        (Exported(False, LAST, None), "without permanentStorageHwmDate"),
    ],
)
def test_package_dates_that_cannot_move_the_checkpoint(event: Exported, match: str) -> None:
    with pytest.raises(IntegrityError, match=match):
        step(exporting_to_present, event)


def test_budget_stops_before_an_export_and_a_refused_start_costs_nothing() -> None:
    state = attrs.evolve(ready, budget=1)
    state, _ = step(state, Next(NOW))
    state, _ = step(state, NothingNew(accepted=False))  # 420 before KSeF accepted it: not counted
    assert state.budget == 1
    spent = attrs.evolve(ready, budget=0)
    after, commands = step(spent, Next(NOW))
    assert (after.phase, after.stop, commands) == (Phase.DONE, StopReason.BUDGET, (Stop(StopReason.BUDGET),))
    unlimited = attrs.evolve(exporting_to_present, budget=None)
    assert step(unlimited, EVENTS["truncated"])[0].budget is None


def test_21182_waits_then_gives_up_after_busy_retries_in_a_row() -> None:
    state = exporting_to_present
    for expected_busy in (1, 2):
        state, commands = step(state, Busy())
        assert (state.busy, commands) == (expected_busy, (Wait(30.0),))
        state, _ = step(state, Next(NOW))
    with pytest.raises(ProtocolError, match="3 times in a row") as info:
        step(state, Busy())
    assert info.value.operation == "post_invoices_exports"


def test_an_accepted_export_resets_the_21182_count() -> None:
    state = attrs.evolve(exporting_to_present, busy=2)
    after, _ = step(state, EVENTS["truncated"])
    assert after.busy == 0
