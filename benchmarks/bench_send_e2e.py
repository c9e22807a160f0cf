"""End-to-end batch send against the simulator: wall time per stage and invoices/s, ours beside a sequential upload.

The simulator runs in its own process (``ksef-async simulator``, rate limits as in production), so it does not
share this process's event loop or GIL. Three runs on the same generated files:

* ``ours``: validation on, ``--concurrency 4`` part uploads;
* ``ours, no validation``: the same without validation; ``validate`` is the difference of the two prepare times
  (validation runs inside the one prepare pass, in threads, so it has no stage of its own);
* ``baseline: sequential upload``: validation off, one part at a time (what ``ksef2`` does, and ``ksef-client``
  by default), everything else ours.

Stages: ``prepare`` (read, zip, split, encrypt, hash, spool), ``open``, ``upload``, ``close``,
``process`` (close to status 200: the simulator's processing), ``results`` (every page of per-invoice
statuses, matched), ``upo`` (download and hash check).

Run: ``python benchmarks/bench_send_e2e.py [--invoices 10000] [--part-size 3000000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.testing.invoices import write_invoices

NIP = "5265877635"
TOKEN = "20250101-EC-0000000000-0000000000-00|nip-5265877635|" + "0" * 64
STAGES = ("validate", "prepare", "open", "upload", "close", "process", "results", "upo")


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    """Start ``ksef-async simulator`` on a free port; return the process and its base URL."""
    code = "from ksef_async.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "simulator", "--port", "0", "--nip", NIP, "--token", TOKEN, "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http"):
        proc.kill()
        msg = f"the simulator did not start: {base_url!r}"
        raise RuntimeError(msg)
    return proc, base_url


async def send_once(base_url: str, inputs: Path, state: Path, config: SendConfig) -> tuple[dict[str, float], int]:
    """One send; return the stage timings plus ``total``, and the number of accepted invoices."""
    started = time.perf_counter()
    client = KsefClient(
        base_url,
        credentials=KsefTokenCredentials(TOKEN),
        context=NIP,
        config=ClientConfig(storage_connections=config.concurrency),
    )
    async with client:
        await client.login()
        begun = time.perf_counter()
        report = await BatchSender(client, state, config).send(str(inputs))
    timings: dict[str, float] = dict(report.timings)
    timings["total"] = time.perf_counter() - begun
    timings["login"] = begun - started
    accepted = report.count("accepted")
    return timings, accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--part-size", type=int, default=3_000_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-send-"))
    status = Backoff(initial=0.2, factor=1.5, maximum=2.0)
    runs: list[tuple[str, SendConfig]] = [
        ("ours", SendConfig(concurrency=args.concurrency, part_size=args.part_size, status_backoff=status)),
        (
            "ours, no validation",
            SendConfig(concurrency=args.concurrency, part_size=args.part_size, validate=False, status_backoff=status),
        ),
        (
            "baseline: sequential upload",
            SendConfig(concurrency=1, part_size=args.part_size, validate=False, status_backoff=status),
        ),
    ]
    results: dict[str, dict[str, float]] = {}
    try:
        made = time.perf_counter()
        inputs = work / "in"
        write_invoices(inputs, args.invoices, NIP, seed=None)  # fresh numbers: no KSeF duplicates across runs
        size = sum(p.stat().st_size for p in inputs.iterdir())
        print(f"generated {args.invoices:,} invoices ({size / 1e6:.1f} MB) in {time.perf_counter() - made:.1f} s")
        for index, (name, config) in enumerate(runs):
            # A fresh simulator per run, so each starts from an empty KSeF (no duplicates of the earlier runs).
            proc, base_url = start_simulator()
            try:
                timings, accepted = asyncio.run(send_once(base_url, inputs, work / f"state-{index}", config))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            if accepted != args.invoices:
                msg = f"{name}: {accepted} of {args.invoices} accepted"
                raise RuntimeError(msg)
            results[name] = timings
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["ours"]["validate"] = results["ours"]["prepare"] - results["ours, no validation"]["prepare"]
    print_table(results, args, size)


def print_table(results: dict[str, dict[str, float]], args: Any, size: int) -> None:
    """Print the stage table, ours beside the baseline."""
    cpu = platform.processor() or platform.machine()
    print(f"machine: nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}; load {os.getloadavg()}")
    print(
        f"{args.invoices:,} invoices ({size / 1e6:.1f} MB XML), part size {args.part_size:,} B, "
        f"concurrency {args.concurrency}; wall seconds per stage (stages of sessions overlap)"
    )
    names = list(results)
    print(f"{'stage':<10}" + "".join(f"{n:>30}" for n in names))
    for stage in (*STAGES, "total"):
        cells = [f"{results[n][stage]:>30.2f}" if stage in results[n] else f"{'-':>30}" for n in names]
        print(f"{stage:<10}" + "".join(cells))
    rates = [f"{args.invoices / results[n]['total']:>30,.0f}" for n in names]
    print(f"{'inv/s':<10}" + "".join(rates))
    ours, base = results["ours, no validation"]["upload"], results["baseline: sequential upload"]["upload"]
    print(f"upload stage: ours {ours:.2f} s vs sequential {base:.2f} s ({base / ours:.1f}x)" if ours else "")


if __name__ == "__main__":
    main()
