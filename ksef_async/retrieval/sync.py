"""Incremental High-Water-Mark sync: exports by PermanentStorage date into a directory, exactly once, resumable.

The algorithm (official docs ``pobieranie-faktur/przyrostowe-pobieranie-faktur.md`` and ``hwm.md``), for each
subject type:

1. ``from`` = the stored checkpoint (first run: ``since``); ``to`` omitted, ``restrictToPermanentStorageHwmDate``
   true. When ``from`` is more than 100 days back, ``to`` = ``from`` + 100 days in UTC minus a minute (the 2.9.0
   range limit, `ksef_async.core.windows`), and the windows are walked one after the other.
2. Export, poll, download, check, decrypt, unpack (`ksef_async.retrieval.export`).
3. Write each invoice not yet on disk as ``{ksefNumber}.xml`` (temporary name, rename), make each batch durable
   with one barrier (`os.sync`; per-file and directory fsync where it does not exist), append the batch's metadata
   to ``index.jsonl`` (fsync); only then
4. advance the checkpoint: ``lastPermanentStorageDate`` when the package is truncated (10,000 invoices or the size
   limit), else ``permanentStorageHwmDate``; repeat from 1 while the package was truncated or the window ended
   below the HWM.

Steps 1 and 4 (windows, checkpoint moves, budget, the 21182 waits) are the pure machine of
`ksef_async.core.sync_machine`; this module exports, writes and saves what it commands.

A crash anywhere leaves the checkpoint at or before the first invoice not durably written, so a re-run exports
that range again and the KSeF-number check skips what is already on disk: nothing lost, nothing written twice.
Windows share their boundary instants (inclusive ranges), which the same check absorbs. Status 420 (``from``
after the HWM) means there is nothing new yet.

Budget: every export costs one of the 20 ``invoiceExport`` calls per hour (shared by all subject types and by any
other client of the context). The client's rate limiter makes a call wait for its window instead of running into
429s; the report says how many exports were made and how long they waited. ``export_budget`` caps the exports of
one run so that a scheduler can spread the hourly budget.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async._private_files import append_private, private_dir, sync_directory, write_private
from ksef_async.core.codes import ExceptionCode, ExportStatus
from ksef_async.core.polling import Backoff
from ksef_async.core.safepath import safe_join
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
    Wait,
    step,
)
from ksef_async.core.system_warnings import WarningTally
from ksef_async.core.windows import require_aware
from ksef_async.errors import BadRequestError, ConfigurationError, ExportFailedError
from ksef_async.models import (
    CompressionType,
    InvoiceQueryDateRange,
    InvoiceQueryDateType,
    InvoiceQueryFilters,
    InvoiceQuerySubjectType,
)
from ksef_async.resources.retrieval import RetrievalResource, aware
from ksef_async.retrieval.export import ExportedInvoice, export_invoices

__all__ = [
    "CHECKPOINT_FILE",
    "EXPORTS_IN_PROGRESS",
    "FROM_AFTER_HWM_STATUS",
    "INDEX_FILE",
    "CheckpointStore",
    "InvoiceDirectory",
    "JsonCheckpointStore",
    "SubjectReport",
    "SyncReport",
    "sync_invoices",
]

logger = get_logger("sync")

CHECKPOINT_FILE = ".ksef-sync-checkpoints.json"
"""Default checkpoint file inside the output directory."""
INDEX_FILE = "index.jsonl"
"""Metadata index: one JSON object per invoice written (``ksefNumber``, ``subjectType``, ``file``, ``metadata``)."""
FROM_AFTER_HWM_STATUS = ExportStatus.FROM_AFTER_HWM
"""Export status: ``from`` is after the HWM (nothing is final there yet)."""
EXPORTS_IN_PROGRESS = ExceptionCode.EXPORTS_IN_PROGRESS
"""KSeF exception code: 10 exports already in progress in this context."""
_WRITE_BATCH = 256


class CheckpointStore(Protocol):
    """Where the sync keeps, per subject type, the ``from`` of its next export."""

    def load(self, subject_type: str) -> dt.datetime | None:
        """The stored checkpoint of ``subject_type``, or None before the first run."""
        ...

    def save(self, subject_type: str, checkpoint: dt.datetime) -> None:
        """Store ``checkpoint`` durably before returning."""
        ...


class JsonCheckpointStore:
    """Checkpoints in one JSON file, replaced atomically (temporary file, fsync, rename, directory fsync).

    Args:
        path: The JSON file (created on the first save).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"JsonCheckpointStore({str(self.path)!r})"

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{self.path}: cannot read the checkpoint file ({exc})") from None
        subjects = doc.get("subjects") if isinstance(doc, dict) else None
        if not isinstance(subjects, dict):
            raise ConfigurationError(f"{self.path}: not a checkpoint file (no 'subjects' object)")
        return subjects

    def load(self, subject_type: str) -> dt.datetime | None:
        """The checkpoint of ``subject_type`` or None."""
        entry = self._read().get(subject_type)
        if entry is None:
            return None
        try:
            return aware(dt.datetime.fromisoformat(entry["from"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(f"{self.path}: subjects.{subject_type}.from is not a date-time") from None

    def save(self, subject_type: str, checkpoint: dt.datetime) -> None:
        """Replace the checkpoint of ``subject_type`` durably."""
        subjects = self._read()
        subjects[subject_type] = {
            "from": aware(checkpoint).isoformat(),
            "saved": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        data = json.dumps({"version": 1, "subjects": subjects}, indent=1, sort_keys=True).encode()
        private_dir(self.path.parent)
        write_private(self.path, data, fsync=True, fsync_dir=True)


class InvoiceDirectory:
    """The output directory: ``{ksefNumber}.xml`` files and ``index.jsonl``; knows which numbers it holds.

    Opening it removes temporary files a killed run left behind and cuts a torn last index line.

    Args:
        path: The directory (created if missing).
        fsync: fsync every file and the directory (turn off only for throw-away output).
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        private_dir(path)
        for leftover in path.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        self.index_path = path / INDEX_FILE
        self.indexed: set[str] = set()
        self._repair_index()

    def __repr__(self) -> str:
        return f"InvoiceDirectory({str(self.path)!r}, invoices={len(self.indexed)})"

    def _repair_index(self) -> None:
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            return
        keep = data if data.endswith(b"\n") or not data else data[: data.rfind(b"\n") + 1]
        if keep != data:
            # A kill -9 in the middle of an append: drop the torn line (its invoice gets indexed again).
            with self.index_path.open("r+b") as fh:
                fh.truncate(len(keep))
                fh.flush()
                os.fsync(fh.fileno())
        for number, line in enumerate(keep.splitlines(), 1):
            if line.strip():
                try:
                    self.indexed.add(str(json.loads(line)["ksefNumber"]))
                except (ValueError, TypeError, KeyError):
                    raise ConfigurationError(
                        f"{self.index_path}: line {number} is not an index entry (a JSON object with 'ksefNumber'); "
                        "repair or remove that line"
                    ) from None

    def write(self, invoices: Sequence[ExportedInvoice], subject_type: str) -> tuple[int, int]:
        """Write the invoices not indexed yet, make them durable, then index them; return ``(written, skipped)``.

        Each XML goes to a temporary name and is renamed into place; one barrier then makes the whole batch durable
        (`os.sync` where it exists: one journal commit per batch instead of one fsync per file, which costs ~3 ms
        each on a busy disk), and only then are the index lines appended (and fsynced). An XML file already on disk
        but not indexed (a run killed before indexing) is kept when its bytes are the invoice's, rewritten otherwise
        (e.g. a file left empty by a power loss before the barrier).
        """
        lines: list[bytes] = []
        written = skipped = 0
        per_file_fsync = self.fsync and not hasattr(os, "sync")
        batch: set[str] = set()
        for invoice in invoices:
            number = invoice.ksef_number
            if number in self.indexed or number in batch:
                skipped += 1
                continue
            batch.add(number)
            name = f"{number}.xml"
            target = safe_join(self.path, name)
            if invoice.xml is not None and not _same_content(target, invoice.xml):
                # owner-only: invoices hold counterparty data
                write_private(target, invoice.xml, fsync=per_file_fsync)
            entry = {
                "ksefNumber": number,
                "subjectType": subject_type,
                "file": name if invoice.xml is not None else None,
                "metadata": invoice.raw_metadata,
            }
            lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
            written += 1
        if lines:
            if self.fsync:
                if per_file_fsync:
                    sync_directory(self.path)
                else:
                    os.sync()
            append_private(self.index_path, b"".join(lines), fsync=self.fsync)
            self.indexed |= batch
        return written, skipped


def _same_content(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


@attrs.define
class SubjectReport:
    """What one subject type's sync did."""

    subject_type: str
    checkpoint_before: dt.datetime | None = None
    checkpoint_after: dt.datetime | None = None
    exports: int = 0
    """Export requests KSeF accepted (each spends the hourly ``invoiceExport`` budget)."""
    truncated_packages: int = 0
    invoices_received: int = 0
    invoices_written: int = 0
    duplicates_skipped: int = 0
    waited_seconds: float = 0.0
    """Time the export requests spent before KSeF accepted them, almost all of it waiting for the rate limiter."""
    up_to_date: bool = False
    """The last export found ``from`` after the HWM (420): nothing new is final yet."""
    stopped_by_budget: bool = False
    """``export_budget`` ran out before the HWM was reached; the next run continues from the checkpoint."""
    reference_numbers: list[str] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = attrs.asdict(self)
        for name in ("checkpoint_before", "checkpoint_after"):
            value = out[name]
            out[name] = value.isoformat() if value is not None else None
        out["waited_seconds"] = round(self.waited_seconds, 3)
        return out


@attrs.define
class SyncReport:
    """What a `sync_invoices` run did, per subject type."""

    subjects: list[SubjectReport] = attrs.field(factory=list)
    elapsed_seconds: float = 0.0
    system_warnings: tuple[WarningTally, ...] = ()
    """The distinct ``X-System-Warning`` warnings KSeF sent during the run, with their counts."""
    system_warning_count: int = 0
    """How many warnings arrived during the run (repeats included)."""

    @property
    def exports(self) -> int:
        """Exports made in total."""
        return sum(s.exports for s in self.subjects)

    @property
    def invoices_written(self) -> int:
        """New invoices written in total."""
        return sum(s.invoices_written for s in self.subjects)

    @property
    def duplicates_skipped(self) -> int:
        """Invoices received again and skipped (already on disk)."""
        return sum(s.duplicates_skipped for s in self.subjects)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's summary file)."""
        return {
            "exports": self.exports,
            "invoicesWritten": self.invoices_written,
            "duplicatesSkipped": self.duplicates_skipped,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
            "subjects": [s.to_json() for s in self.subjects],
            "systemWarnings": {
                "count": self.system_warning_count,
                "distinct": [w.to_json() for w in self.system_warnings],
            },
        }


ProgressCallback = Callable[[str, int, int], None]
"""``(subject type, invoices written so far, invoices received so far)``."""


async def _write_all(
    directory: InvoiceDirectory,
    invoices: AsyncIterable[ExportedInvoice],
    subject: str,
    report: SubjectReport,
    on_progress: ProgressCallback | None,
) -> None:
    batch: list[ExportedInvoice] = []

    async def flush() -> None:
        written, skipped = await asyncio.to_thread(directory.write, list(batch), subject)
        report.invoices_written += written
        report.duplicates_skipped += skipped
        batch.clear()
        if on_progress is not None:
            on_progress(subject, report.invoices_written, report.invoices_received)

    async for invoice in invoices:
        report.invoices_received += 1
        batch.append(invoice)
        if len(batch) >= _WRITE_BATCH:
            await flush()
    if batch:
        await flush()


@attrs.define
class _Run:
    """What every subject type of one `sync_invoices` run shares: where to write, how to export, the clocks."""

    retrieval: RetrievalResource
    directory: InvoiceDirectory
    checkpoints: CheckpointStore
    export_options: dict[str, Any]
    on_progress: ProgressCallback | None
    now: Callable[[], dt.datetime]
    monotonic: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]


async def sync_invoices(  # long only by its documented keywords: the logic is _sync_subject's and the machine's
    retrieval: RetrievalResource,
    outdir: Path,
    *,
    subject_types: Sequence[InvoiceQuerySubjectType | str] = (InvoiceQuerySubjectType.SUBJECT2,),
    since: dt.datetime | None = None,
    store: CheckpointStore | None = None,
    export_budget: int | None = None,
    compression: CompressionType | str = CompressionType.ZIP,
    concurrency: int = 4,
    workdir: Path | None = None,
    fsync: bool = True,
    max_wait: float | None = 3600.0,
    backoff: Backoff | None = None,
    busy_wait: float = 60.0,
    busy_retries: int = 60,
    on_progress: ProgressCallback | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> SyncReport:
    """Bring ``outdir`` up to the High Water Mark for each subject type (see the module docstring).

    The decisions (windows, checkpoint moves, budget, 21182) are `ksef_async.core.sync_machine`'s; this loop
    exports, writes and saves what it says.

    Args:
        retrieval: ``client.retrieval``.
        outdir: Output directory: ``{ksefNumber}.xml``, ``index.jsonl`` and (by default) the checkpoint file.
        subject_types: ``Subject1`` (sales), ``Subject2`` (purchases), ``Subject3``, ``SubjectAuthorized``.
        since: Where a subject type without a checkpoint starts (PermanentStorage date; must carry a UTC offset).
        store: Checkpoint store (default: `JsonCheckpointStore` at ``outdir/.ksef-sync-checkpoints.json``).
        export_budget: At most this many exports in this run (None: until the HWM).
        compression: Package format asked for.
        concurrency: Parts downloaded at once.
        workdir: Where packages are spooled while unpacked (default: the system temp directory).
        fsync: fsync invoice files (keep True unless the output is disposable).
        max_wait: Give up an export still in progress after this many seconds.
        backoff: Waits between export status polls.
        busy_wait: Seconds to wait when KSeF answers 21182 (10 exports in progress) before trying again.
        busy_retries: Give up after this many 21182 answers in a row (`ProtocolError`).
        on_progress: Called after each batch of invoices is written.
        now: Current time (decides whether a window reaches the present).
        monotonic: Monotonic clock (elapsed and waited seconds in the report).
        sleep: Async sleep for the 21182 waits (tests inject a fake).

    Raises:
        NaiveDateTimeError: ``since`` has no UTC offset (checked before anything is sent).
        ConfigurationError: A subject type has no checkpoint and no ``since`` was given.
        ExportFailedError: An export ended in 210, 415, 500 or 550 (420 only means "nothing new").
        IntegrityError: A part or invoice failed its hash check three times.
    """
    if since is not None:
        since = require_aware(since, "since")
    started = monotonic()
    run = _Run(
        retrieval,
        await asyncio.to_thread(InvoiceDirectory, outdir, fsync=fsync),
        store or JsonCheckpointStore(outdir / CHECKPOINT_FILE),
        {
            "compression": compression,
            "workdir": workdir,
            "concurrency": concurrency,
            "max_wait": max_wait,
            "backoff": backoff,
        },
        on_progress,
        now,
        monotonic,
        sleep,
    )
    report = SyncReport()
    seen_warnings = retrieval.system_warnings.recorder()
    budget = export_budget
    for subject_value in subject_types:
        subject = str(subject_value)
        sub = SubjectReport(subject)
        report.subjects.append(sub)
        checkpoint = await asyncio.to_thread(run.checkpoints.load, subject)
        if checkpoint is None:
            if since is None:
                raise ConfigurationError(f"{subject}: no checkpoint yet in {run.checkpoints!r}: give 'since' (--since)")
            checkpoint = since
        sub.checkpoint_before = sub.checkpoint_after = checkpoint
        state = SubjectSync(subject, checkpoint, budget, busy_wait=busy_wait, busy_retries=busy_retries)
        budget = await _sync_subject(run, state, sub)
    report.elapsed_seconds = monotonic() - started
    with seen_warnings:
        report.system_warnings, report.system_warning_count = seen_warnings.tallies(), seen_warnings.total
    logger.info(
        "sync finished",
        extra=extras(exports=report.exports, written=report.invoices_written, skipped=report.duplicates_skipped),
    )
    return report


async def _sync_subject(run: _Run, state: SubjectSync, sub: SubjectReport) -> int | None:
    """Drive one subject type's `SubjectSync` to done: carry out its commands, feed it their outcomes.

    Returns:
        The export budget left for the next subject type.
    """
    event: Event = Next(run.now())
    while True:
        state, commands = step(state, event)
        for command in commands:
            if isinstance(command, SaveCheckpoint):
                # Invoices are durably on disk and indexed: only now may the checkpoint move past them.
                await asyncio.to_thread(run.checkpoints.save, sub.subject_type, command.checkpoint)
                sub.checkpoint_after = command.checkpoint
            elif isinstance(command, Wait):
                logger.warning("10 exports in progress (21182): waiting", extra=extras(wait=command.seconds))
                await run.sleep(command.seconds)
            elif isinstance(command, Stop):
                sub.stopped_by_budget = command.reason is StopReason.BUDGET
                sub.up_to_date = command.reason is StopReason.UP_TO_DATE
                if command.reason is not StopReason.HWM:
                    logger.info(
                        "sync stopped", extra=extras(subject_type=sub.subject_type, reason=command.reason.value)
                    )
            else:
                event = await _export(run, command, sub)
        if state.phase is Phase.DONE:
            return state.budget
        if state.phase is Phase.READY:
            event = Next(run.now())


async def _export(run: _Run, command: Export, sub: SubjectReport) -> Event:
    """Run one export of ``command``'s window, write its invoices; return what it came to (the machine's event)."""
    filters = InvoiceQueryFilters(
        subject_type=sub.subject_type,
        date_range=InvoiceQueryDateRange(
            date_type=InvoiceQueryDateType.PERMANENT_STORAGE,
            from_=command.from_,
            to=command.to,
            restrict_to_permanent_storage_hwm_date=True,
        ),
    )
    asked = run.monotonic()
    accepted: list[float] = []

    def on_started(reference: str) -> None:
        accepted.append(run.monotonic())
        sub.reference_numbers.append(reference)
        sub.exports += 1
        sub.waited_seconds += accepted[0] - asked

    try:
        async with export_invoices(run.retrieval, filters, on_started=on_started, **run.export_options) as package:
            await _write_all(run.directory, package.invoices(), sub.subject_type, sub, run.on_progress)
            info = package.package
    except ExportFailedError as exc:
        if exc.code != FROM_AFTER_HWM_STATUS:
            raise
        logger.info("nothing final after the checkpoint yet (420)", extra=extras(subject_type=sub.subject_type))
        return NothingNew(accepted=bool(accepted))
    except BadRequestError as exc:
        if not exc.has_code(EXPORTS_IN_PROGRESS):
            raise
        return Busy()
    if info.is_truncated:
        sub.truncated_packages += 1
    last, hwm = info.last_permanent_storage_date, info.permanent_storage_hwm_date
    return Exported(info.is_truncated, None if last is None else aware(last), None if hwm is None else aware(hwm))
