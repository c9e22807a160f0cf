"""The batch resume decisions, table-driven: every recorded state x flags for the entry, every probe x observation."""

from __future__ import annotations

import itertools

import pytest

from ksef_async.core.plan import SessionState
from ksef_async.core.resume_machine import (
    Action,
    Observation,
    Probe,
    Recorded,
    ResumeTransitionError,
    entry,
    entry_probe,
    observe_record,
    observe_status,
    transition,
)

S = SessionState
A = Action
O = Observation  # noqa: E741 - the table reads better with one letter

# (state, status code, has reference, unresolved invoices) -> (first send, resume)
ENTRY_TABLE: list[tuple[SessionState, int | None, bool, bool, Action, Action]] = [
    (S.PLANNED, None, False, True, A.OPEN, A.ADOPT),
    (S.PREPARED, None, False, True, A.OPEN, A.ADOPT),
    (S.OPENED, 100, True, True, A.UPLOAD, A.ASK),
    (S.UPLOADING, 100, True, True, A.UPLOAD, A.ASK),
    (S.CLOSED, 100, True, True, A.AWAIT, A.AWAIT),
    (S.PROCESSING, 150, True, True, A.AWAIT, A.AWAIT),
    (S.DONE, 200, True, False, A.SKIP, A.SKIP),
    (S.DONE, 440, True, True, A.REOPEN, A.REOPEN),  # cancelled before processing, invoices unresolved
    (S.DONE, 440, True, False, A.SKIP, A.SKIP),  # every invoice has its outcome already
    (S.FAILED, 440, True, True, A.REOPEN, A.REOPEN),
    (S.FAILED, 440, True, False, A.SKIP, A.SKIP),
    (S.FAILED, None, False, True, A.RESET, A.RESET),  # never reached KSeF
    (S.FAILED, None, True, True, A.ASK, A.ASK),  # failed on our side before any status
    (S.FAILED, 100, True, True, A.ASK, A.ASK),  # failed mid-upload or at close
    (S.FAILED, 150, True, True, A.ASK, A.ASK),  # failed while polling
    (S.FAILED, 445, True, True, A.SKIP, A.SKIP),  # a final failure at KSeF
    (S.FAILED, 405, True, False, A.SKIP, A.SKIP),
]


@pytest.mark.parametrize(("state", "code", "has_reference", "unresolved", "first", "again"), ENTRY_TABLE)
def test_entry_decides_from_the_record_alone(  # noqa: PLR0917 - one parameter per table column
    state: SessionState, code: int | None, has_reference: bool, unresolved: bool, first: Action, again: Action
) -> None:
    recorded = Recorded(state, code, has_reference, unresolved)
    assert entry(recorded, resuming=False) is first
    assert entry(recorded, resuming=True) is again


def test_the_entry_table_covers_every_recorded_state() -> None:
    assert {row[0] for row in ENTRY_TABLE} == set(SessionState)


# Every probe x every observation: the next action and probe, or None where the observation cannot answer it.
TRANSITIONS: dict[tuple[Probe, Observation], tuple[Action, Probe | None] | None] = {
    (Probe.RECORD, O.NO_RECORD): (A.OPEN, None),
    (Probe.RECORD, O.RECORD_EXPIRED): (A.OPEN, None),
    (Probe.RECORD, O.RECORD_IN_WINDOW): (A.ASK, Probe.ADOPTED),
    (Probe.RECORD, O.OPEN_IN_WINDOW): None,
    (Probe.RECORD, O.OPEN_WINDOW_PASSED): None,
    (Probe.RECORD, O.CANCELLED): None,
    (Probe.RECORD, O.NOT_FOUND): None,
    (Probe.RECORD, O.CLOSED): None,
    (Probe.ADOPTED, O.NO_RECORD): None,
    (Probe.ADOPTED, O.RECORD_EXPIRED): None,
    (Probe.ADOPTED, O.RECORD_IN_WINDOW): None,
    (Probe.ADOPTED, O.OPEN_IN_WINDOW): (A.UPLOAD, None),  # taken over: upload the rest, then close
    (Probe.ADOPTED, O.OPEN_WINDOW_PASSED): (A.OPEN, None),
    (Probe.ADOPTED, O.CANCELLED): (A.OPEN, None),
    (Probe.ADOPTED, O.NOT_FOUND): (A.OPEN, None),
    (Probe.ADOPTED, O.CLOSED): (A.OPEN, None),
    (Probe.CLOSE, O.NO_RECORD): None,
    (Probe.CLOSE, O.RECORD_EXPIRED): None,
    (Probe.CLOSE, O.RECORD_IN_WINDOW): None,
    (Probe.CLOSE, O.OPEN_IN_WINDOW): (A.UPLOAD, None),
    (Probe.CLOSE, O.OPEN_WINDOW_PASSED): (A.REOPEN, None),  # cannot be closed in time: new session
    (Probe.CLOSE, O.CANCELLED): (A.REOPEN, None),
    (Probe.CLOSE, O.NOT_FOUND): None,  # the engine reports a 404 as the session's failure
    (Probe.CLOSE, O.CLOSED): (A.AWAIT, None),  # a close went through: never close twice
}


def test_the_transition_table_covers_every_probe_and_observation() -> None:
    assert set(TRANSITIONS) == set(itertools.product(Probe, Observation))


@pytest.mark.parametrize(("probe", "observation"), list(TRANSITIONS))
def test_transition(probe: Probe, observation: Observation) -> None:
    expected = TRANSITIONS[probe, observation]
    if expected is None:
        with pytest.raises(ResumeTransitionError, match=probe.value):
            transition(probe, observation)
    else:
        assert transition(probe, observation) == expected


def test_no_transition_closes_twice_or_reopens_an_adoptable_session() -> None:
    # Properties over the whole table, beside the rows: a status saying "closed" never leads to another close,
    # and a session still open in its window is always finished, never replaced.
    for (probe, observation), outcome in TRANSITIONS.items():
        if outcome is None or probe is Probe.RECORD:
            continue
        if observation is O.CLOSED and probe is Probe.CLOSE:
            assert outcome[0] is A.AWAIT
        if observation is O.OPEN_IN_WINDOW:
            assert outcome[0] is A.UPLOAD


@pytest.mark.parametrize(
    ("action", "probe"),
    [(A.ADOPT, Probe.RECORD), (A.ASK, Probe.CLOSE), *((a, None) for a in Action if a not in {A.ADOPT, A.ASK})],
)
def test_entry_probe(action: Action, probe: Probe | None) -> None:
    assert entry_probe(action) is probe


@pytest.mark.parametrize(
    ("present", "window_open", "observation"),
    [(False, False, O.NO_RECORD), (False, True, O.NO_RECORD), (True, False, O.RECORD_EXPIRED),
     (True, True, O.RECORD_IN_WINDOW)],
)  # fmt: skip
def test_observe_record(present: bool, window_open: bool, observation: Observation) -> None:
    assert observe_record(present=present, window_open=window_open) is observation


@pytest.mark.parametrize(
    ("code", "window_open", "observation"),
    [(None, True, O.NOT_FOUND), (100, True, O.OPEN_IN_WINDOW), (100, False, O.OPEN_WINDOW_PASSED),
     (440, True, O.CANCELLED), (440, False, O.CANCELLED), (150, True, O.CLOSED), (200, False, O.CLOSED),
     (170, True, O.CLOSED), (445, True, O.CLOSED)],
)  # fmt: skip
def test_observe_status(code: int | None, window_open: bool, observation: Observation) -> None:
    assert observe_status(code, window_open=window_open) is observation
