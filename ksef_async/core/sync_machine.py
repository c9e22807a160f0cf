"""The High-Water-Mark sync of one subject type as a pure state machine: windows, checkpoint moves, budget, 21182.

`ksef_async.retrieval.sync.sync_invoices` drives it: it feeds `step` what an export came to (an event) and carries
out the commands it gets back (export this window, save this checkpoint, wait, stop). Nothing here does I/O or
reads a clock: the present comes in with `Next`.

=============  ==========================  =================================================================
phase          event                       result
=============  ==========================  =================================================================
ready          `Next`                      budget spent: done (``budget``); else exporting, `Export` of
                                           ``[checkpoint, window end]`` (``to`` omitted when the window
                                           reaches the present)
exporting      `Exported`                  the checkpoint moves to ``lastPermanentStorageDate`` (truncated
                                           package) or ``permanentStorageHwmDate`` (`SaveCheckpoint`, only
                                           if it advances); done (``hwm``) once a whole package ends below
                                           the window's ``to``, else ready
exporting      `NothingNew` (status 420)   done (``up-to-date``)
exporting      `Busy` (21182)              ready after `Wait`; `ProtocolError` after ``busy_retries`` in a row
done           any                         `SyncTransitionError`
ready          anything but `Next`         `SyncTransitionError`
exporting      `Next`                      `SyncTransitionError`
=============  ==========================  =================================================================

Every export that KSeF accepted costs one of the run's ``budget`` (shared by the subject types of one run).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Final

import attrs

from ksef_async.core.windows import window_end
from ksef_async.errors import IntegrityError, ProtocolError

__all__ = [
    "HWM_PRECISION",
    "WINDOW_MARGIN",
    "Busy",
    "Command",
    "Event",
    "Export",
    "Exported",
    "Next",
    "NothingNew",
    "Phase",
    "SaveCheckpoint",
    "Stop",
    "StopReason",
    "SubjectSync",
    "SyncTransitionError",
    "Wait",
    "step",
]

WINDOW_MARGIN: Final = dt.timedelta(minutes=1)
"""A window ends this much before 100 days after its ``from`` (KSeF counts the limit in UTC, inclusively)."""
HWM_PRECISION: Final = dt.timedelta(seconds=1)
"""KSeF (and the simulator) report dates to the millisecond: a package HWM this close to the window's ``to`` is
that ``to`` (the window is done, the next one follows), not the global mark."""


class Phase(enum.Enum):
    """Where the sync of one subject type stands."""

    READY = "ready"
    """Between exports: the next `Next` decides the next window (or stops)."""
    EXPORTING = "exporting"
    """An export of ``[checkpoint, window_to]`` was commanded; its result is awaited."""
    DONE = "done"
    """Finished for this run (``stop`` says why)."""


class StopReason(enum.Enum):
    """Why the sync of a subject type stopped."""

    HWM = "hwm"
    """A whole package ended at the High Water Mark: everything final is on disk."""
    UP_TO_DATE = "up-to-date"
    """KSeF answered 420: nothing is final after the checkpoint yet."""
    BUDGET = "budget"
    """The run's export budget is spent."""


# -- events ----------------------------------------------------------------------------------------------------------


@attrs.frozen
class Next:
    """Decide the next step (``now``: the present, aware UTC)."""

    now: dt.datetime


@attrs.frozen
class Exported:
    """The export's invoices are durably written and indexed; the package's dates (aware UTC, None if absent)."""

    is_truncated: bool
    last_permanent_storage_date: dt.datetime | None
    permanent_storage_hwm_date: dt.datetime | None


@attrs.frozen
class NothingNew:
    """The export ended in status 420 (``from`` after the HWM); ``accepted``: KSeF had started it."""

    accepted: bool = True


@attrs.frozen
class Busy:
    """KSeF refused to start the export: 10 exports in progress (21182)."""


Event = Next | Exported | NothingNew | Busy

# -- commands --------------------------------------------------------------------------------------------------------


@attrs.frozen
class Export:
    """Export PermanentStorage dates ``[from_, to]`` (``to`` None: up to the HWM), restricted to the HWM."""

    from_: dt.datetime
    to: dt.datetime | None


@attrs.frozen
class SaveCheckpoint:
    """Store ``checkpoint`` durably (the invoices before it are on disk)."""

    checkpoint: dt.datetime


@attrs.frozen
class Wait:
    """Wait ``seconds`` before the next `Next`."""

    seconds: float


@attrs.frozen
class Stop:
    """The subject type is done for this run."""

    reason: StopReason


Command = Export | SaveCheckpoint | Wait | Stop


class SyncTransitionError(ValueError):
    """An event that the phase cannot take (a driver bug, never a server's doing)."""


@attrs.frozen
class SubjectSync:
    """The state of one subject type's sync.

    Attributes:
        subject: The subject type (``Subject1``, ``Subject2``...), for messages.
        checkpoint: The ``from`` of the next export (aware UTC).
        budget: Exports left in this run (None: no cap).
        busy_wait: Seconds to wait after a 21182.
        busy_retries: 21182 answers in a row tolerated.
        phase: Where it stands.
        window_to: The ``to`` of the export in flight (None: up to the HWM).
        busy: 21182 answers in a row so far.
        stop: Why it is done (phase ``DONE``).
    """

    subject: str
    checkpoint: dt.datetime
    budget: int | None = None
    busy_wait: float = 60.0
    busy_retries: int = 60
    phase: Phase = Phase.READY
    window_to: dt.datetime | None = None
    busy: int = 0
    stop: StopReason | None = None


def _window_to(checkpoint: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The ``to`` of the window from ``checkpoint``: None when it reaches the present (KSeF stops at the HWM)."""
    end = window_end(checkpoint) - WINDOW_MARGIN
    end = end.replace(microsecond=end.microsecond // 1000 * 1000)  # KSeF's precision: the HWM comes back equal
    return None if end >= now else end


def _spend(state: SubjectSync) -> int | None:
    return None if state.budget is None else state.budget - 1


def _on_next(state: SubjectSync, event: Next) -> tuple[SubjectSync, tuple[Command, ...]]:
    if state.budget is not None and state.budget <= 0:
        return attrs.evolve(state, phase=Phase.DONE, stop=StopReason.BUDGET), (Stop(StopReason.BUDGET),)
    to = _window_to(state.checkpoint, event.now)
    return attrs.evolve(state, phase=Phase.EXPORTING, window_to=to), (Export(state.checkpoint, to),)


def _following(state: SubjectSync, event: Exported) -> dt.datetime:
    """Where the checkpoint goes after a package (see the module's table)."""
    if event.is_truncated:
        following = event.last_permanent_storage_date
        if following is None:
            raise IntegrityError(f"{state.subject}: truncated package without lastPermanentStorageDate")
        if following <= state.checkpoint:
            raise IntegrityError(
                f"{state.subject}: a full package shares one permanent-storage date ({following.isoformat()}): the "
                "checkpoint cannot advance"
            )
        return following
    if event.permanent_storage_hwm_date is None:
        raise IntegrityError(f"{state.subject}: package without permanentStorageHwmDate")
    return event.permanent_storage_hwm_date


def _on_exported(state: SubjectSync, event: Exported) -> tuple[SubjectSync, tuple[Command, ...]]:
    following = _following(state, event)
    commands: list[Command] = []
    checkpoint = state.checkpoint
    if following > checkpoint:
        # The driver feeds `Exported` only once the invoices are durably on disk and indexed.
        commands.append(SaveCheckpoint(following))
        checkpoint = following
    to = state.window_to
    reached_hwm = not event.is_truncated and (to is None or following < to - HWM_PRECISION)
    after = attrs.evolve(state, checkpoint=checkpoint, budget=_spend(state), busy=0, window_to=None)
    if reached_hwm:
        commands.append(Stop(StopReason.HWM))
        return attrs.evolve(after, phase=Phase.DONE, stop=StopReason.HWM), tuple(commands)
    return attrs.evolve(after, phase=Phase.READY), tuple(commands)


def _on_nothing_new(state: SubjectSync, event: NothingNew) -> tuple[SubjectSync, tuple[Command, ...]]:
    budget = _spend(state) if event.accepted else state.budget
    done = attrs.evolve(state, phase=Phase.DONE, stop=StopReason.UP_TO_DATE, budget=budget, window_to=None)
    return done, (Stop(StopReason.UP_TO_DATE),)


def _on_busy(state: SubjectSync, _event: Busy) -> tuple[SubjectSync, tuple[Command, ...]]:
    busy = state.busy + 1
    if busy > state.busy_retries:
        msg = f"{state.subject}: KSeF answered 21182 (10 exports in progress) {busy} times in a row: giving up"
        raise ProtocolError(
            msg, operation="post_invoices_exports", field="$.exception.exceptionDetailList[].exceptionCode"
        )
    return attrs.evolve(state, phase=Phase.READY, busy=busy, window_to=None), (Wait(state.busy_wait),)


def step(state: SubjectSync, event: Event) -> tuple[SubjectSync, tuple[Command, ...]]:
    """Apply ``event``; return the new state and the commands to carry out, in order.

    Raises:
        SyncTransitionError: ``event`` cannot happen in ``state.phase`` (see the module's table).
        IntegrityError: A package's dates cannot move the checkpoint (missing, or a full package on one instant).
        ProtocolError: More than ``busy_retries`` 21182 answers in a row.
    """
    if state.phase is Phase.READY and isinstance(event, Next):
        return _on_next(state, event)
    if state.phase is Phase.EXPORTING:
        if isinstance(event, Exported):
            return _on_exported(state, event)
        if isinstance(event, NothingNew):
            return _on_nothing_new(state, event)
        if isinstance(event, Busy):
            return _on_busy(state, event)
    msg = f"{state.subject}: {type(event).__name__} cannot happen while {state.phase.value}"
    raise SyncTransitionError(msg)
