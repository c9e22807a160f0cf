"""The batch path of `ksef-async send` (and the runner `resume` and `demo` share): progress, report, exit code.

Exit codes: 0 every invoice accepted (a KSeF duplicate counts: it was accepted earlier), 1 any rejected, invalid
or without a final result, 2 usage or configuration, 3 interrupted by SIGINT/SIGTERM (the plan is saved; the
message says how to resume).

The state directory (``--state-dir``; by default a new directory under ``$XDG_CACHE_HOME/ksef-async``) holds the
plan, the ciphertext spool and the signed upload URLs needed to resume (see `ksef_async.batch.resume`): those
URLs are secrets and are kept only there (0600 files), never printed, logged or put into the report.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
from rich.console import Console

from ksef_async.batch import PLAN_FILE
from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.batch.reconcile import BatchReport
from ksef_async.batch.resume import default_state_dir
from ksef_async.cli._connection import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, Connection, run_async
from ksef_async.cli._exit_codes import EXIT_INTERRUPTED
from ksef_async.cli._files import write_output
from ksef_async.cli._progress import BatchProgress, data_console, print_summary
from ksef_async.cli._remember import record_of, remember
from ksef_async.client import ClientConfig
from ksef_async.core.batch_limits import MAX_PART_PLAIN_SIZE
from ksef_async.errors import ConfigurationError
from ksef_async.resources._features import check_features

__all__ = ["EXIT_INTERRUPTED", "BatchRun", "finish_batch", "run_interruptible", "send_batch"]


@attrs.frozen
class BatchRun:
    """What a batch command produced: the report, or the fact that it was interrupted."""

    state_dir: Path
    report: BatchReport | None
    interrupted: bool = False


async def run_interruptible(work: Callable[[], Awaitable[BatchReport]], state_dir: Path) -> BatchRun:
    """Run ``work``; SIGINT or SIGTERM cancel it (the engine saves the plan on the way out)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread / Windows
            continue
    try:
        return BatchRun(state_dir, await work())
    except asyncio.CancelledError:
        if not interrupted:
            raise
        task.uncancel()
        return BatchRun(state_dir, None, interrupted=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def finish_batch(
    run: BatchRun,
    *,
    report_path: Path | None,
    console: Console,
    resume_hint: str,
) -> int:
    """Print the summary, write the report, and return the exit code."""
    if (run.interrupted or run.report is None) and not (run.state_dir / PLAN_FILE).exists():
        # Interrupted while preparing: no plan, so nothing to resume and nothing was sent.
        console.print(
            f"interrupted before the batch was prepared: nothing was sent and there is nothing to resume "
            f"(no plan in {run.state_dir}); run the same command again",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return EXIT_INTERRUPTED
    if run.interrupted or run.report is None:
        console.print(
            f"interrupted: the plan is saved in {run.state_dir}\nfinish the work with: {resume_hint}",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    report = run.report
    written: str | None = None
    if report_path is not None:
        write_output(report_path, (json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n").encode())
        written = str(report_path)
    print_summary(report, console, report_path=written)
    if not report.complete:
        console.print(
            f"some invoices have no final result yet; finish with: {resume_hint}", highlight=False, soft_wrap=True
        )
    return EXIT_OK if report.all_accepted else EXIT_REJECTED


def _resume_hint(state_dir: Path, connection: Connection) -> str:
    needed = record_of(connection).needed_secret()
    secret = f" (with {needed[0]} set)" if needed is not None else ""
    return f"ksef-async resume {state_dir}{secret}"


def send_batch(
    files: list[Path],
    connection: Connection,
    *,
    report: Path | None = None,
    upo_dir: Path | None = None,
    skip_invalid: bool = False,
    concurrency: int = 4,
    validate: bool = True,
    part_size: int = MAX_PART_PLAIN_SIZE,
    state_dir: Path | None = None,
    offline: bool = False,
    console: Console | None = None,
    features: list[str] | None = None,
) -> int:
    """Send ``files`` by batch; print progress and the summary; return the exit code (see the module docstring)."""
    out = console or data_console()
    try:
        config = SendConfig(
            concurrency=concurrency,
            part_size=part_size,
            validate=validate,
            on_invalid="skip" if skip_invalid else "stop",
            upo_dir=upo_dir,
            offline_mode=offline,
        )
        check_features(features or (), field="--feature")
    except (ConfigurationError, ValueError) as exc:
        print(f"ksef-async send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    directory = state_dir or default_state_dir()
    out.print(f"state directory: {directory}", highlight=False, soft_wrap=True)

    async def main() -> BatchRun:
        async with connection.client(ClientConfig(storage_connections=concurrency)) as client:
            # The connection (never a secret) goes next to the plan: `resume DIR` needs only the secret.
            if not (directory / PLAN_FILE).exists():  # a directory holding a batch keeps its record (send refuses it)
                remember(directory, record_of(connection))
            with BatchProgress(out) as progress:
                sender = BatchSender(client, directory, config, on_event=progress.handle, features=features)
                return await run_interruptible(lambda: sender.send([str(f) for f in files]), directory)

    return run_async(
        main,
        lambda run: finish_batch(run, report_path=report, console=out, resume_hint=_resume_hint(directory, connection)),
    )
