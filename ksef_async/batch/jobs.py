"""Find the batch sends left unfinished under a root directory, for job registries that resume them on start-up."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.batch.prepare import PLAN_FILE, load_plan
from ksef_async.core.codes import SessionStatus
from ksef_async.core.plan import SessionState
from ksef_async.errors import ConfigurationError

__all__ = ["UnfinishedBatch", "find_unfinished_batches"]

logger = get_logger("batch")

_CANCELLED = SessionStatus.CANCELLED  # batch session: invoices without an outcome are sent again on resume


@attrs.frozen
class UnfinishedBatch:
    """One state directory whose send has not finished: pass ``state_dir`` to `ksef_async.resume_batch`.

    Attributes:
        state_dir: The state directory (holds ``plan.json``).
        sessions: Sessions in the plan.
        sessions_done: Sessions that reached ``done`` (with nothing to send again).
        invoices: Invoices in the plan.
    """

    state_dir: Path
    sessions: int
    sessions_done: int
    invoices: int


def _unfinished(state_dir: Path) -> UnfinishedBatch | None:
    plan = load_plan(state_dir)
    done = sum(
        1
        for s in plan.sessions
        if s.state is SessionState.DONE
        and not (s.status_code == _CANCELLED and any(i.outcome is None for i in s.invoices))
    )
    if done == len(plan.sessions):
        return None
    return UnfinishedBatch(state_dir, len(plan.sessions), done, plan.invoice_count)


def find_unfinished_batches(root: str | os.PathLike[str]) -> list[UnfinishedBatch]:
    """List the state directories directly under ``root`` (and ``root`` itself) whose batch send is unfinished.

    A directory counts when its ``plan.json`` (written once preparation finished: before that nothing was sent)
    has a session that `ksef_async.resume_batch` would drive: one not ``done``, or a cancelled one with invoices
    to send again.
    Unreadable or corrupt plans are skipped with a warning naming the directory. Only one level is scanned, so
    the call is bounded by the number of entries of ``root``; sorted by path.

    Raises:
        ConfigurationError: ``root`` is not a readable directory.
    """
    base = Path(root)
    try:
        children = sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError as exc:
        raise ConfigurationError(f"{base}: cannot list the batch state root: {exc.strerror or exc}") from exc
    found: list[UnfinishedBatch] = []
    for directory in [base, *children]:
        if not (directory / PLAN_FILE).is_file():
            continue
        try:
            entry = _unfinished(directory)
        except (ConfigurationError, ValueError, OSError) as exc:
            logger.warning("%s: plan unreadable, skipped: %s", directory, exc, extra=extras(path=str(directory)))
            continue
        if entry is not None:
            found.append(entry)
    return found
