"""`ksef-async send`: send invoice files to KSeF and write a per-invoice report.

`send` validates its options and hands over to the batch engine (the default, `ksef_async.cli.send_batch`) or to
``_send_online`` (``--online``). ``--offline`` marks the invoices as issued in an offline mode (``offlineMode``: per
invoice online, per session in a batch); ``--online --corrects ORIGINAL`` sends the one FILE as the technical
correction of the rejected offline invoice ORIGINAL (`ksef_async.online.send_technical_correction`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from ksef_async._private_files import private_dir, write_private_in
from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_LOCAL_IO, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, Connection, run_async
from ksef_async.cli._files import check_outputs, write_output
from ksef_async.cli.send_batch import send_batch
from ksef_async.cli.send_manifest import send_manifest_cli
from ksef_async.cli.validate import expand_paths
from ksef_async.core.batch_limits import MAX_PART_PLAIN_SIZE
from ksef_async.core.safepath import checked_reference_number
from ksef_async.errors import TechnicalCorrectionError
from ksef_async.online import (
    InvoiceOutcome,
    OnlineSendResult,
    send_online,
    send_technical_correction,
)

__all__ = ["send"]


@app.command(name="send")
def send(  # noqa: PLR0911 - one hand-over per mode (manifest, correction, batch, online)
    paths: list[Path] | None = None,
    /,
    *,
    online: Annotated[bool, Parameter(negative="")] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    report: Path | None = None,
    skip_invalid: Annotated[bool, Parameter(negative="")] = False,
    concurrency: int = 8,
    wait: float = 600.0,
    upo_dir: Path | None = None,
    no_validate: Annotated[bool, Parameter(negative="")] = False,
    part_size: int = MAX_PART_PLAIN_SIZE,
    state_dir: Path | None = None,
    offline: Annotated[bool, Parameter(negative="")] = False,
    corrects: Path | None = None,
    feature: list[str] | None = None,
    manifest: Path | None = None,
) -> int:
    """Send invoices to KSeF and print one line per invoice.

    Exits 0 when every invoice was accepted, 1 when any was rejected (or invalid), 2 for usage or configuration
    errors, 3 when interrupted (batch: ``resume`` finishes), 4 when a local file could not be read or written
    (the message names it; outputs are checked before sending, so 4 after sending means the invoices' outcome
    stands and only the named file is missing).

    Parameters
    ----------
    paths
        Invoice files (any name), directories (searched recursively for names ending in ``.xml``, any case) or
        glob patterns (``*``, ``?``, ``[...]``, ``**`` for any depth; case-sensitive, as written). Names starting
        with a dot are skipped inside directories and by wildcards, as by the shell; symbolic links to files are
        followed, links to directories only when named or matched by the pattern's last part. Every unreadable
        directory or file is reported (exit 2), never skipped.
    online
        Send through an online (interactive) session: one request per invoice.
    connection
        Where and how to log in.
    report
        Write a JSON report (one entry per invoice, plus the sessions) to this file.
    skip_invalid
        Send the valid invoices even if some are invalid (by default nothing is sent then).
    concurrency
        Online: invoices in flight at once (the rate limiter still paces the requests). Batch: parts uploaded at
        once (the storage connection pool is sized to match).
    wait
        Online: seconds to wait for KSeF to process the session after closing it.
    upo_dir
        Save the session UPO pages here.
    no_validate
        Batch: skip the local preflight and XSD validation (KSeF still validates every invoice).
    part_size
        Batch: the largest plaintext part in bytes (at most 99,999,984); smaller parts spread one archive over
        several connections.
    state_dir
        Batch: where the plan, the encrypted parts and the resume records live (default: a new directory under
        the user's cache directory, printed at start). ``ksef-async resume DIR`` finishes an interrupted send.
    offline
        The invoices were issued in an offline mode (offline24, offline, emergency): send them with
        ``offlineMode`` true (online: on every invoice; batch: on every session). KSeF marks them ``Offline``.
    corrects
        Online only, one invoice: send it as the technical correction of this rejected offline invoice (the
        original's exact bytes are hashed into ``hashOfCorrectedInvoice``). Exits 1 when KSeF refuses it (21166: a
        valid correction exists; 21167: the original's status forbids one).
    feature
        Send this ``X-KSeF-Feature`` when opening the sessions (repeatable), e.g. ``subject-identifier-validation``:
        KSeF then checks the NIP and internal identifiers of the parties on each invoice.
    manifest
        Send for many contexts at once: a TOML file mapping input directories to contexts and credentials (see
        `ksef_async.manifest`; secrets only by environment variable name). One state directory per context under
        --state-dir, progress per context, one --report; ``ksef-async resume STATE_DIR`` finishes the run.
    """
    if manifest is not None:
        return send_manifest_cli(
            manifest, connection, report=report, state_dir=state_dir, concurrency=concurrency, paths=paths
        )
    files, unusable = expand_paths(paths or [])
    for problem in unusable:
        print(problem, file=sys.stderr)
    if unusable or not files:
        if not files:
            print("no invoice files found in the given paths", file=sys.stderr)
        return EXIT_USAGE
    # Every output is checked before anything is sent: a report that cannot be written after KSeF accepted the
    # invoices would otherwise turn an accepted send into an error a script might answer by sending again.
    if check_outputs((report, "--report", False), (upo_dir, "--upo-dir", True), (state_dir, "--state-dir", True)):
        return EXIT_LOCAL_IO
    if corrects is not None:
        refusal = (
            "--corrects needs --online and exactly one invoice file (the correction)"
            if not online or len(files) != 1
            else None
            if corrects.is_file()
            else f"{corrects}: no such file"
        )
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return EXIT_USAGE
        return run_async(
            lambda: _send_correction(files[0], corrects, connection, wait=wait),
            lambda result: _finish(result, report=report, upo_dir=upo_dir),
        )
    if not online:
        return send_batch(
            files,
            connection,
            report=report,
            upo_dir=upo_dir,
            skip_invalid=skip_invalid,
            concurrency=concurrency,
            validate=not no_validate,
            part_size=part_size,
            state_dir=state_dir,
            offline=offline,
            features=feature,
        )
    return run_async(
        lambda: _send_online(
            files,
            connection,
            skip_invalid=skip_invalid,
            concurrency=concurrency,
            wait=wait,
            offline=offline,
            features=feature,
        ),
        lambda result: _finish(result, report=report, upo_dir=upo_dir),
    )


async def _send_online(
    files: list[Path],
    connection: Connection,
    *,
    skip_invalid: bool,
    concurrency: int,
    wait: float,
    offline: bool,
    features: list[str] | None = None,
) -> OnlineSendResult:
    async with connection.client() as client:
        return await send_online(
            client,
            files,
            skip_invalid=skip_invalid,
            concurrency=concurrency,
            max_wait=wait,
            offline_mode=offline,
            features=features,
        )


async def _send_correction(file: Path, original: Path, connection: Connection, *, wait: float) -> OnlineSendResult:
    async with connection.client() as client:
        try:
            return await send_technical_correction(client, file, original=original, max_wait=wait)
        except TechnicalCorrectionError as exc:
            # A refusal is an outcome of this invoice (exit 1), not a usage error: report it like a rejection.
            outcome = InvoiceOutcome(
                name=str(file),
                description=f"technical correction refused by KSeF: {exc}",
                details=tuple(f"exception code {code}" for code in exc.codes),
            )
            return OnlineSendResult((outcome,), ())


def _finish(result: OnlineSendResult, *, report: Path | None, upo_dir: Path | None) -> int:
    _print_result(result)
    if report is not None:
        write_output(report, (json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n").encode())
    if upo_dir is not None:
        write_upo_pages(result, upo_dir)
    return EXIT_OK if result.all_accepted else EXIT_REJECTED


def _print_result(result: OnlineSendResult) -> None:
    for outcome in result.outcomes:
        mode = f" ({outcome.invoicing_mode})" if outcome.invoicing_mode == "Offline" else ""
        if outcome.accepted:
            print(f"{outcome.name}: accepted {outcome.ksef_number}{mode}")
        else:
            code = f"[{outcome.status_code}] " if outcome.status_code is not None else ""
            extra = f" (original {outcome.original_ksef_number})" if outcome.original_ksef_number else ""
            details = f": {'; '.join(outcome.details)}" if outcome.details else ""
            print(f"{outcome.name}: rejected {code}{outcome.description}{details}{extra}")
            for problem in outcome.problems:
                print(f"  {problem}")
    for session in result.sessions:
        print(
            f"session {session.reference_number} ({session.form_code}): [{session.status_code}] {session.description}"
        )
    print(f"{len(result.accepted)} accepted, {len(result.rejected)} rejected", file=sys.stderr)


def write_upo_pages(result: OnlineSendResult, directory: Path) -> list[Path]:
    """Write each session's UPO pages as ``<session>-<n>.xml`` into ``directory``; return the paths."""
    written: list[Path] = []
    for session in result.sessions:
        # The reference number comes from the server: checked before it becomes a file name.
        reference = checked_reference_number(session.reference_number, source="session referenceNumber")
        private_dir(directory)
        for number, page in enumerate(session.upo, 1):
            written.append(write_private_in(directory, f"{reference}-{number}.xml", page))
    return written
