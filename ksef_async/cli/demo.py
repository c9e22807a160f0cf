"""`ksef-async demo`: send N generated invoices by batch to an embedded simulator and show every stage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import attrs

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.batch.resume import default_state_dir
from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_USAGE, run_async
from ksef_async.cli._progress import BatchProgress, data_console
from ksef_async.cli.send_batch import BatchRun, finish_batch, run_interruptible
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.pipeline import MAX_PART_PLAIN_SIZE
from ksef_async.core.plan import MAX_INVOICES, MAX_PARTS
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError
from ksef_async.testing.invoices import InvoiceFactory

__all__ = ["DEMO_NIP", "demo", "demo_part_size"]

DEMO_NIP: Final = "5265877635"
"""The seller NIP of the demo context (the seller of the official FA(3) sample)."""
_DEMO_PART_SIZE: Final = 400_000  # several parts even for 1,000 invoices, so the upload runs in parallel


def demo_part_size(invoice_sizes: list[int]) -> int:
    """The demo's default part size: small, but large enough for 10,000 of these invoices in 50 parts.

    Small parts mean several parts even for 1,000 invoices, so the upload runs in parallel; but a part size so
    small that 50 parts hold fewer than a full session's 10,000 invoices would open sessions needlessly.

    Bounded by the invoices' *uncompressed* bytes, so it holds whatever the compression ratio.
    """
    largest_session = sum(sorted(invoice_sizes, reverse=True)[:MAX_INVOICES])
    needed = -(-largest_session // MAX_PARTS) + 64 * 1024  # + the zip headers of 10,000 entries, with room
    return min(MAX_PART_PLAIN_SIZE, max(_DEMO_PART_SIZE, needed))


@app.command(name="demo")
def demo(
    *,
    invoices: int = 1000,
    concurrency: int = 4,
    part_size: int | None = None,
    state_dir: Path | None = None,
    seed: int | None = None,
) -> int:
    """Start a KSeF simulator in this process, generate invoices, send them by batch, and show what happened.

    Nothing leaves the machine: the simulator listens on a free loopback port. Prints the progress, the summary,
    the wall time of each stage, and where the UPO and the JSON report were saved.

    Parameters
    ----------
    invoices
        How many FA(3) invoices to generate and send.
    concurrency
        Parts uploaded at once.
    part_size
        Largest plaintext part in bytes (small parts show the parallel upload; default: 400,000, or what lets
        one session hold 10,000 of the generated invoices in 50 parts).
    state_dir
        Where the plan, parts, UPO and report go (default: a new directory under the user's cache).
    seed
        Make the generated invoices deterministic.
    """
    console = data_console()
    if invoices < 1:
        console.print("ksef-async demo: --invoices must be at least 1")
        return EXIT_USAGE
    try:
        config = SendConfig(
            concurrency=concurrency,
            part_size=part_size or _DEMO_PART_SIZE,
            # The simulator answers at once: poll briskly so the demo shows the engine, not the back-off.
            status_backoff=Backoff(initial=0.1, factor=1.5, maximum=1.0),
        )
    except (ConfigurationError, ValueError) as exc:
        console.print(f"ksef-async demo: {exc}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    directory = state_dir or default_state_dir()
    report_path = directory / "report.json"

    async def main() -> BatchRun:
        from ksef_async.testing.simulator import KsefSimulator  # noqa: PLC0415 - only the demo needs aiohttp.web

        started = time.perf_counter()
        async with KsefSimulator(seed=seed) as sim:
            token = sim.add_context(DEMO_NIP)
            console.print(f"simulator: {sim.base_url} (in this process)", highlight=False, soft_wrap=True)
            factory = InvoiceFactory(DEMO_NIP, seed=seed)
            items = list(factory.iter(invoices))
            generated = time.perf_counter() - started
            size = sum(len(data) for _, data in items)
            console.print(
                f"generated {invoices} FA(3) invoices ({size / 1e6:.1f} MB) in {generated:.2f} s", soft_wrap=True
            )
            console.print(f"state directory: {directory}", highlight=False, soft_wrap=True)
            run_config = config
            if part_size is None:
                run_config = attrs.evolve(config, part_size=demo_part_size([len(data) for _, data in items]))
            client = KsefClient(
                sim.base_url,
                credentials=KsefTokenCredentials(token),
                context=DEMO_NIP,
                config=ClientConfig(storage_connections=concurrency),
            )
            async with client:
                with BatchProgress(console) as progress:
                    sender = BatchSender(client, directory, run_config, on_event=progress.handle)
                    run = await run_interruptible(lambda: sender.send(items), directory)
        if run.report is not None:
            timings = {"generate": round(generated, 6), **run.report.timings}
            run = attrs.evolve(run, report=attrs.evolve(run.report, timings=timings))
            console.print(f"total: {time.perf_counter() - started:.2f} s", highlight=False, soft_wrap=True)
        return run

    hint = f"the demo's simulator is gone; run 'ksef-async demo' again ({directory} can be deleted)"
    return run_async(main, lambda run: finish_batch(run, report_path=report_path, console=console, resume_hint=hint))
