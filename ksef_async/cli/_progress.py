"""Rich rendering of the batch event stream: progress bars while sending, then the summary and timings."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ksef_async.batch.events import (
    BatchEvent,
    InvoicesValidated,
    OutageWaiting,
    PartProgress,
    PartRetried,
    ResultsFetched,
    SessionPrepared,
    SessionStatusChanged,
)
from ksef_async.batch.reconcile import BatchReport
from ksef_async.cli._output import OutputSettings

__all__ = ["BatchProgress", "data_console", "print_summary"]

_STAGE_ORDER = ("generate", "prepare", "open", "upload", "close", "process", "results", "upo")


def data_console(*, stderr: bool = True) -> Console:
    """Return the console every command prints through: markup off, so server and file text print as data.

    A rejection description or a file name containing ``[/x]`` would otherwise be parsed as rich markup (and
    raise after the send); styles are given with ``style=`` instead.
    """
    return Console(stderr=stderr, markup=False, highlight=False)


class BatchProgress:
    """Three bars (invoices prepared, bytes uploaded, sessions finished) fed by `handle`; a context manager.

    Upload bytes can go backwards: a retried part rewinds what it had sent. Retries and session status changes
    are printed above the bars. On a terminal that is not interactive the bars stay silent and only the lines
    are printed.

    Args:
        console: Where to draw (stderr by default).
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or data_console()
        self._progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.fields[count]:>17}"),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            disable=OutputSettings.quiet or not self.console.is_terminal,
        )
        self._invoices: TaskID = self._progress.add_task("prepared", total=None, count="0", extra="")
        self._upload: TaskID = self._progress.add_task("uploaded", total=0, count="0.0/0.0 MB", extra="")
        self._sessions: TaskID = self._progress.add_task("sessions", total=0, count="0/0", extra="")
        self._prepared = 0
        self._session_total = 0
        self._session_done = 0
        self._uploaded = 0
        self._total_bytes = 0
        self._accepted = 0
        self._rejected = 0

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def handle(self, event: BatchEvent) -> None:
        """Update the bars for one event."""
        p = self._progress
        if isinstance(event, SessionPrepared):
            self._prepared += event.invoices
            self._total_bytes += event.ciphertext_bytes
            self._session_total += 1
            p.update(self._invoices, completed=self._prepared, count=f"{self._prepared:,}")
            self._show_bytes()
            p.update(self._sessions, total=self._session_total, count=f"{self._session_done}/{self._session_total}")
        elif isinstance(event, InvoicesValidated):
            skipped = f"{event.skipped} left out" if event.skipped else ""
            p.update(self._invoices, total=event.invoices, completed=event.invoices, extra=skipped)
        elif isinstance(event, PartProgress):
            self._uploaded += event.delta  # negative when a retried part rewinds
            self._show_bytes()
        elif isinstance(event, PartRetried):
            p.console.print(
                f"session {event.session} part {event.ordinal}: {event.error}, retry {event.attempt} "
                f"in {event.wait:.1f} s",
                style="yellow",
                markup=False,
            )
        elif isinstance(event, OutageWaiting):
            p.console.print(f"[yellow]{event.message}")
        elif isinstance(event, SessionStatusChanged):
            if event.state in {"done", "failed"}:
                self._session_done += 1
                p.update(
                    self._sessions,
                    completed=self._session_done,
                    count=f"{self._session_done}/{self._session_total}",
                )
            code = f" [{event.code}]" if event.code is not None else ""
            ref = f" {event.reference_number}" if event.reference_number else ""
            p.console.print(f"session {event.session}{ref}: {event.state}{code}", highlight=False, soft_wrap=True)
        elif isinstance(event, ResultsFetched):
            self._accepted += event.accepted + event.duplicates
            self._rejected += event.rejected
            p.update(self._sessions, extra=f"{self._accepted:,} accepted, {self._rejected:,} rejected")

    def _show_bytes(self) -> None:
        self._progress.update(
            self._upload,
            total=self._total_bytes,
            completed=self._uploaded,
            count=f"{self._uploaded / 1e6:.1f}/{self._total_bytes / 1e6:.1f} MB",
        )


def print_summary(report: BatchReport, console: Console, *, report_path: str | None = None) -> None:
    """Print the outcome counts, the sessions, the timings per stage, and where the report and UPO are."""
    summary = report.to_json()["summary"]
    parts = [f"{summary['accepted']} accepted"]
    parts.extend(f"{summary[key]} {key}" for key in ("duplicate", "rejected", "invalid", "unknown") if summary[key])
    style = "green" if report.all_accepted else "red"
    console.print(f"{summary['invoices']} invoices: {', '.join(parts)}", style=f"bold {style}", markup=False)
    for entry in report.entries:
        if entry.outcome in {"rejected", "invalid", "unknown"}:
            error = entry.error or {}
            code = f"[{error.get('code')}] " if error.get("code") is not None else ""
            console.print(
                f"  {entry.file}: {entry.outcome} {code}{error.get('description') or ''}",
                highlight=False,
                soft_wrap=True,
            )
    table = Table(title="sessions", show_edge=False)
    table.add_column("#")
    table.add_column("reference number", no_wrap=True)
    for column in ("status", "invoices", "parts"):
        table.add_column(column)
    for session in report.sessions:
        status = f"{session['statusCode']} {session['statusDescription'] or ''}".strip()
        table.add_row(
            str(session["index"]),
            str(session["referenceNumber"] or "-"),
            status,
            str(session["invoices"]),
            str(session["parts"]),
        )
    console.print(table)
    timings = Table(title="wall seconds per stage", caption="stages of several sessions overlap", show_edge=False)
    timings.add_column("stage")
    timings.add_column("seconds", justify="right")
    known = [s for s in _STAGE_ORDER if s in report.timings]
    for stage in known + sorted(set(report.timings) - set(known)):
        timings.add_row(stage, f"{report.timings[stage]:.2f}")
    console.print(timings)
    upo = [path for session in report.sessions for path in session["upo"]]
    if upo:
        console.print(f"UPO: {', '.join(upo)}", highlight=False, soft_wrap=True)
    if report_path:
        console.print(f"report: {report_path}", highlight=False, soft_wrap=True)
