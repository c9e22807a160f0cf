"""What a batch session still needs when it is driven (again): the resume decisions as a pure state machine.

The batch engine (`ksef_async.batch.engine`) records every step of a session in the plan. When it drives a
session, the plan's record alone decides where to start (`entry`); where the record cannot tell (was the session
opened before the plan recorded it? did a close go through before a crash?), the engine asks KSeF and feeds what
it learns to `transition`, which names the next action. Nothing here does I/O: the engine does the asking, the
waiting and the writing.

The rule behind every answer: nothing is sent until a session's parts are uploaded *and* it is closed, and a
session opened but never closed expires at KSeF (440) unsent. So a session is re-sent in a new one only when KSeF
cancelled it before processing (440) or it can no longer be closed (window passed); a session that may have been
closed is never closed again, and every other final status is final.

==========================  ==================================================================================
recorded state              `entry`
==========================  ==================================================================================
planned, prepared           resume: ``ADOPT`` (look for an upload record of an open not yet in the plan);
                            a first send: ``OPEN``
opened, uploading           resume: ``ASK`` (did a close go through?); a first send: ``UPLOAD``
closed, processing          ``AWAIT`` (poll to a final status, fetch results, save the UPO)
done                        ``SKIP``; ``REOPEN`` if KSeF cancelled it (440) with invoices still unresolved
failed                      ``REOPEN`` after a 440 with invoices unresolved; ``RESET`` (open anew) if it never
                            got a reference number; ``ASK`` if it failed on our side (no final code);
                            else ``SKIP`` (a final failure at KSeF)
==========================  ==================================================================================
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ksef_async.core.codes import SessionStatus
from ksef_async.core.plan import SessionState

__all__ = [
    "CANCELLED",
    "OPEN",
    "PENDING_CODES",
    "Action",
    "Observation",
    "Probe",
    "Recorded",
    "ResumeTransitionError",
    "entry",
    "entry_probe",
    "observe_record",
    "observe_status",
    "transition",
]

OPEN: Final = SessionStatus.OPEN
"""Session status: open, parts may be uploaded."""
CANCELLED: Final = SessionStatus.CANCELLED
"""Session status: cancelled before processing (upload window passed, or no invoices): nothing was processed."""
PENDING_CODES: Final = frozenset({OPEN, SessionStatus.PROCESSING})
"""Session status codes that are not final (open, processing)."""


class Action(enum.Enum):
    """What the engine does next with a session."""

    SKIP = "skip"
    """Nothing: the session's outcome is final."""
    REOPEN = "reopen"
    """Forget the session at KSeF (it expires unsent) and send the same parts in a new one (counts as a re-send)."""
    RESET = "reset"
    """The session never reached KSeF: put its parts back to prepared, then open one."""
    ADOPT = "adopt"
    """Read the session's upload record (``probe`` `Probe.RECORD`): an open may precede the plan's record of it."""
    OPEN = "open"
    """Open a new session (any earlier open of it was never closed and expires unsent)."""
    ASK = "ask"
    """Ask KSeF the session's status (``probe`` `Probe.CLOSE` or `Probe.ADOPTED`) before anything is repeated."""
    UPLOAD = "upload"
    """Upload the parts not yet acknowledged, then close the session."""
    AWAIT = "await"
    """The session is closed: poll it to a final status, fetch the results, save the UPO."""


class Probe(enum.Enum):
    """What the engine is finding out (the machine's state between an action and what it learns)."""

    RECORD = "record"
    """Whether the state directory holds an upload record (``sNNN-upload.json``) of an unrecorded open."""
    ADOPTED = "adopted"
    """The status of the session named by that upload record: can it be taken over?"""
    CLOSE = "close"
    """The status of a session recorded as open: did a close go through before the crash?"""


class Observation(enum.Enum):
    """What the engine learned (the machine's events)."""

    NO_RECORD = "no-record"
    """No upload record: no open happened that the plan does not know of (or it was discarded)."""
    RECORD_EXPIRED = "record-expired"
    """An upload record whose upload window has passed."""
    RECORD_IN_WINDOW = "record-in-window"
    """An upload record still inside its upload window."""
    OPEN_IN_WINDOW = "open-in-window"
    """Status 100, inside the upload window: parts may still be uploaded and the session closed."""
    OPEN_WINDOW_PASSED = "open-window-passed"
    """Status 100, but the upload window has passed: it cannot be closed in time."""
    CANCELLED = "cancelled"
    """Status 440: KSeF cancelled it before processing."""
    NOT_FOUND = "not-found"
    """KSeF answered 404 for the reference number."""
    CLOSED = "closed"
    """Any other status (150, 200, a failure code): a close went through."""


@attrs.frozen
class Recorded:
    """What the plan records of a session, as far as the resume decisions need it.

    Attributes:
        state: The recorded `SessionState`.
        status_code: KSeF's last session status code seen (``None``: never asked).
        has_reference: Whether a reference number is recorded.
        unresolved: Whether some invoice of the session has no outcome yet.
    """

    state: SessionState
    status_code: int | None
    has_reference: bool
    unresolved: bool

    @property
    def needs_resend(self) -> bool:
        """KSeF cancelled the session before processing and some of its invoices have no outcome."""
        return self.status_code == CANCELLED and self.unresolved


_LIFECYCLE: Final[dict[SessionState, tuple[Action, Action]]] = {
    # state: (first send, resume)
    SessionState.PLANNED: (Action.OPEN, Action.ADOPT),
    SessionState.PREPARED: (Action.OPEN, Action.ADOPT),
    SessionState.OPENED: (Action.UPLOAD, Action.ASK),
    SessionState.UPLOADING: (Action.UPLOAD, Action.ASK),
    SessionState.CLOSED: (Action.AWAIT, Action.AWAIT),
    SessionState.PROCESSING: (Action.AWAIT, Action.AWAIT),
}


class ResumeTransitionError(ValueError):
    """An observation that cannot answer the probe it was given for (an engine bug, never a server's doing)."""


def entry(recorded: Recorded, *, resuming: bool) -> Action:
    """Where driving a session starts, from its record alone (see the module's table).

    Args:
        recorded: The plan's record of the session.
        resuming: Whether this is a resume (earlier runs may have acted without the plan recording it).
    """
    state = recorded.state
    if state in _LIFECYCLE:
        first_send, resume = _LIFECYCLE[state]
        return resume if resuming else first_send
    if recorded.needs_resend:  # done or failed, but KSeF cancelled it before processing
        return Action.REOPEN
    if state is SessionState.FAILED and not recorded.has_reference:
        return Action.RESET
    if state is SessionState.FAILED and (recorded.status_code is None or recorded.status_code in PENDING_CODES):
        return Action.ASK  # it failed on our side (upload, close or polling): KSeF says where it stands
    return Action.SKIP  # done, or a final failure at KSeF


def entry_probe(action: Action) -> Probe | None:
    """The probe an entry action starts (``ADOPT``: the record; ``ASK``: did a close go through), else ``None``."""
    return {Action.ADOPT: Probe.RECORD, Action.ASK: Probe.CLOSE}.get(action)


_TABLE: Final[dict[tuple[Probe, Observation], tuple[Action, Probe | None]]] = {
    # An open the plan does not record: take it over only while it is usable, else it expires unsent.
    (Probe.RECORD, Observation.NO_RECORD): (Action.OPEN, None),
    (Probe.RECORD, Observation.RECORD_EXPIRED): (Action.OPEN, None),
    (Probe.RECORD, Observation.RECORD_IN_WINDOW): (Action.ASK, Probe.ADOPTED),
    (Probe.ADOPTED, Observation.OPEN_IN_WINDOW): (Action.UPLOAD, None),
    (Probe.ADOPTED, Observation.OPEN_WINDOW_PASSED): (Action.OPEN, None),
    (Probe.ADOPTED, Observation.CANCELLED): (Action.OPEN, None),
    (Probe.ADOPTED, Observation.NOT_FOUND): (Action.OPEN, None),
    (Probe.ADOPTED, Observation.CLOSED): (Action.OPEN, None),  # never closed by us: cannot be ours to finish
    # A session the plan records as open: a close may have gone through before the crash.
    (Probe.CLOSE, Observation.OPEN_IN_WINDOW): (Action.UPLOAD, None),
    (Probe.CLOSE, Observation.OPEN_WINDOW_PASSED): (Action.REOPEN, None),
    (Probe.CLOSE, Observation.CANCELLED): (Action.REOPEN, None),
    (Probe.CLOSE, Observation.CLOSED): (Action.AWAIT, None),  # never close twice
}


def transition(probe: Probe, observation: Observation) -> tuple[Action, Probe | None]:
    """The next action after ``observation`` answered ``probe``, and the next probe (``None``: no more asking).

    Raises:
        ResumeTransitionError: ``observation`` does not answer ``probe`` (a record fact for a status probe, a
            status for the record probe, or a 404 for a session the plan records as open, which the engine
            reports as that session's failure instead of asking here).
    """
    try:
        return _TABLE[probe, observation]
    except KeyError:
        msg = f"{observation.value!r} does not answer the {probe.value!r} probe"
        raise ResumeTransitionError(msg) from None


def observe_record(*, present: bool, window_open: bool) -> Observation:
    """Classify the upload record probe: none, expired, or still inside its window."""
    if not present:
        return Observation.NO_RECORD
    return Observation.RECORD_IN_WINDOW if window_open else Observation.RECORD_EXPIRED


def observe_status(code: int | None, *, window_open: bool) -> Observation:
    """Classify a session status answer (``code`` ``None``: KSeF answered 404 for the reference number)."""
    if code is None:
        return Observation.NOT_FOUND
    if code == OPEN:
        return Observation.OPEN_IN_WINDOW if window_open else Observation.OPEN_WINDOW_PASSED
    if code == CANCELLED:
        return Observation.CANCELLED
    return Observation.CLOSED
