"""`ksef-async sync`: download every invoice up to the High Water Mark into a directory, incrementally."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_LOCAL_IO, EXIT_OK, EXIT_USAGE, Connection, run_async
from ksef_async.cli._files import check_outputs, write_output
from ksef_async.cli._output import OutputSettings
from ksef_async.cli._progress import data_console
from ksef_async.cli._remember import SYNC_RUN_FILE, load_sync_run, recalled, record_of, remember_sync_run
from ksef_async.cli.query import parse_moment, parse_subjects
from ksef_async.errors import ConfigurationError
from ksef_async.models import CompressionType
from ksef_async.retrieval.sync import SyncReport, sync_invoices

__all__ = ["SUMMARY_FILE", "sync"]

SUMMARY_FILE = "sync-summary.json"
"""The last run's report, written into the output directory."""


@app.command(name="sync")
def sync(
    outdir: Path,
    /,
    *,
    subject: str | None = None,
    since: str | None = None,
    budget: int | None = None,
    tar: Annotated[bool, Parameter(negative="")] = False,
    concurrency: int = 4,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
) -> int:
    """Download received (or issued) invoices into OUTDIR, each once, up to KSeF's High Water Mark.

    Writes ``{ksefNumber}.xml`` per invoice, ``index.jsonl`` (one metadata line per invoice), the checkpoints
    (``.ksef-sync-checkpoints.json``) and ``sync-summary.json``. Run it again later to fetch what is new; a run
    that is killed can simply be started again.

    Parameters
    ----------
    outdir
        Output directory.
    subject
        Comma-separated subject types: Subject1 (issued), Subject2 (received), Subject3, SubjectAuthorized.
        Default: those of the last run into OUTDIR, else Subject2.
    since
        Start (permanent-storage date) for a subject type without a checkpoint, e.g. 2025-02-01 (without an
        offset: Europe/Warsaw local time, sent with its offset); exports walk 100-day windows (in UTC).
    budget
        At most this many exports in this run (KSeF allows 20 per hour per context).
    tar
        Ask for TarGz packages instead of Zip.
    concurrency
        Package parts downloaded at once.
    connection
        Where and how to log in. A re-run into the same OUTDIR takes them from ``OUTDIR/.ksef-sync-run.json``
        (never a secret): only KSEF_TOKEN (or KSEF_KEY_PASSWORD) is needed again.
    as_json
        Print the summary as JSON.
    """
    try:
        last = load_sync_run(outdir)
        if last is not None:
            connection = recalled(connection, last[0], command="sync", source=outdir / SYNC_RUN_FILE)
            tar = tar or last[2]
        subjects = parse_subjects(subject or (",".join(last[1]) if last is not None and last[1] else "Subject2"))
        start = parse_moment(since, "--since") if since is not None else None
    except ConfigurationError as exc:
        print(f"ksef-async: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if check_outputs((outdir, "OUTDIR", True)):
        return EXIT_LOCAL_IO

    async def main() -> SyncReport:
        console = data_console()
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[written]} written, {task.completed} received"),
            TimeElapsedColumn(),
            console=console,
            disable=OutputSettings.quiet or not console.is_terminal,
            transient=True,
        ) as progress:
            tasks = {s.value: progress.add_task(f"sync {s.value}", total=None, written=0) for s in subjects}

            def on_progress(subject_type: str, written: int, received: int) -> None:
                progress.update(tasks[subject_type], completed=received, written=written)

            async with connection.client() as client:
                remember_sync_run(outdir, record_of(connection), [s.value for s in subjects], tar=tar)
                return await sync_invoices(
                    client.retrieval,
                    outdir,
                    subject_types=subjects,
                    since=start,
                    export_budget=budget,
                    compression=CompressionType.TAR_GZ if tar else CompressionType.ZIP,
                    concurrency=concurrency,
                    on_progress=on_progress,
                )

    def finish(report: SyncReport) -> int:
        summary = report.to_json()
        write_output(outdir / SUMMARY_FILE, (json.dumps(summary, ensure_ascii=False, indent=2) + "\n").encode())
        if as_json:
            print(json.dumps(summary, ensure_ascii=False, indent=2))
            return EXIT_OK
        for sub in report.subjects:
            state = (
                "stopped: export budget spent"
                if sub.stopped_by_budget
                else "up to date (nothing final after the checkpoint yet)"
                if sub.up_to_date
                else "reached the High Water Mark"
            )
            after = sub.checkpoint_after.isoformat() if sub.checkpoint_after else "-"
            print(
                f"{sub.subject_type}: {sub.invoices_written} new, {sub.duplicates_skipped} already on disk, "
                f"{sub.exports} export(s) ({sub.truncated_packages} truncated), waited {sub.waited_seconds:.1f} s "
                f"for the rate limit; checkpoint {after}; {state}"
            )
        print(f"total: {report.invoices_written} new invoice(s) in {outdir} ({report.elapsed_seconds:.1f} s)")
        return EXIT_OK

    return run_async(main, finish)
