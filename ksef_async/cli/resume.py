"""`ksef-async resume DIR`: finish a batch send from its state directory after a crash, kill or interruption."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_LOCAL_IO, EXIT_USAGE, Connection, run_async
from ksef_async.cli._files import check_outputs
from ksef_async.cli._progress import BatchProgress, data_console
from ksef_async.cli._remember import load_record, recalled, record_of
from ksef_async.cli.send_batch import BatchRun, finish_batch, run_interruptible
from ksef_async.cli.send_manifest import is_manifest_run, resume_manifest_cli
from ksef_async.client import ClientConfig
from ksef_async.core.connection_record import CONNECTION_FILE
from ksef_async.errors import ConfigurationError

__all__ = ["resume"]


@app.command(name="resume")
def resume(
    state_dir: Path,
    /,
    *,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    report: Path | None = None,
    upo_dir: Path | None = None,
    concurrency: Annotated[int, Parameter(help="Parts uploaded at once.")] = 4,
) -> int:
    """Finish the batch send recorded in STATE_DIR: upload what is missing, close, and collect the results.

    Parts still inside their upload window are uploaded to the same session; a session whose window passed
    (or that KSeF cancelled before processing) is re-sent as a new one. A session that was closed is never
    closed or sent again, so no invoice is sent twice. Exit codes as for ``send`` (0, 1, 2, 3, 4).

    Parameters
    ----------
    state_dir
        The state directory printed by ``send`` (holds plan.json and the encrypted parts).
    connection
        Where and how to log in. Taken from STATE_DIR/connection.json, which ``send`` wrote: only the secret is
        needed again (KSEF_TOKEN, or KSEF_KEY_PASSWORD for a password-protected key); an option given here must
        agree with the recorded server and context.
    report
        Write the JSON report (one entry per invoice) to this file.
    upo_dir
        Save the session UPO pages here (default: STATE_DIR/upo).
    concurrency
        Parts uploaded at once.
    """
    console = data_console()
    if is_manifest_run(state_dir):  # a `send --manifest` run: one batch state directory per context
        if check_outputs((report, "--report", False)):
            return EXIT_LOCAL_IO
        return resume_manifest_cli(state_dir, connection, report=report, concurrency=concurrency)
    if not (state_dir / "plan.json").is_file():
        console.print(
            f"ksef-async resume: {state_dir} holds no plan.json: preparation never finished there, so nothing was "
            "sent; run 'ksef-async send' again",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_USAGE
    if check_outputs((report, "--report", False), (upo_dir, "--upo-dir", True)):
        return EXIT_LOCAL_IO
    try:
        config = SendConfig(concurrency=concurrency, upo_dir=upo_dir)
        # What the original send recorded fills every option not given: only the secret is needed.
        connection = recalled(connection, load_record(state_dir), command="resume", source=state_dir / CONNECTION_FILE)
    except ConfigurationError as exc:
        console.print(f"ksef-async resume: {exc}", highlight=False, soft_wrap=True)
        return EXIT_USAGE

    async def main() -> BatchRun:
        async with connection.client(ClientConfig(storage_connections=concurrency)) as client:
            with BatchProgress(console) as progress:
                sender = BatchSender(client, state_dir, config, on_event=progress.handle)
                return await run_interruptible(sender.resume, state_dir)

    needed = record_of(connection).needed_secret()
    hint = f"ksef-async resume {state_dir}" + (f" (with {needed[0]} set)" if needed is not None else "")
    return run_async(main, lambda run: finish_batch(run, report_path=report, console=console, resume_hint=hint))
