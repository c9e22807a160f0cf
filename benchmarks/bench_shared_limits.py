"""Four processes sending for one context at KSeF's production limits: limits shared through Redis vs per process.

Run: ``python benchmarks/bench_shared_limits.py [--duration 150] [--processes 4] [--concurrency 8]`` (needs
``redis-server`` on PATH and ``ksef-async[redis]``; takes about twice ``duration`` plus start-up). Each strategy gets
a fresh simulator in a child process (``ksef-async simulator``, production limits) and a fresh Redis; the processes
are separate Python processes (``--worker`` runs of this script). Each logs in, opens one online session, waits for a
common start time, then sends invoices with ``concurrency`` tasks for ``duration`` seconds:

- ``redis``: ``KsefClient(..., rate_limits="redis://...")``: the four processes admit through one set of windows
  (`ksef_async.ratelimit_redis`), on Redis' clock;
- ``memory``: ``rate_limits="memory://"``: each process has its own limiter, so together they send four times what
  the windows allow, and the simulator (counting per context and client address, as KSeF) answers 429.

Figures: invoices accepted (202) within the duration across the processes, the most one context can get in that time
(a greedy sender against the exact invoiceSend windows: 10/s, 30/min, 180/h), the ratio, and the 429 answers.
Then the cost of one admission: ``Backend.try_admit`` and a full ``RateLimiter.acquire`` (group + ``global``) on the
Redis backend (one script round trip each over loopback) beside the memory backend, p50/p99 in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import aiohttp
from _machine import describe
from bench_online_rate import CONFIG, FA3, NIP, TOKEN, SimulatorProcess, greedy_bound

from ksef_async import KsefClient, KsefTokenCredentials
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import RateLimitedError
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.ratelimit import MemoryBackend, RateLimiter
from ksef_async.ratelimit_redis import RedisLimits
from ksef_async.testing.invoices import InvoiceFactory


class RedisProcess:
    """A throw-away ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(500):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return f"redis://127.0.0.1:{self.port}/0"
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


async def worker(
    base_url: str, limits_url: str, seed: int, *, start_at: float, duration: float, concurrency: int
) -> None:
    """One sending process: prints one JSON line with its accepted send times and the 429s it received."""
    refused = 0

    async def on_end(_session: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        nonlocal refused
        refused += params.response.status == 429

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    invoices = iter([data for _, data in InvoiceFactory(NIP, seed=seed).iter(int(duration) + 50)])
    accepted: list[float] = []
    gave_up = 0
    async with KsefClient(
        base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, config=CONFIG, trace_configs=[trace],
        rate_limits=limits_url,
    ) as client:  # fmt: skip
        await client.login()
        session = await client.online.open(FA3)
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def send() -> None:
            nonlocal gave_up
            for invoice in invoices:
                try:
                    await client.online.send(session, invoice)
                except RateLimitedError:
                    gave_up += 1  # 429 after every retry: this invoice is not sent
                    continue
                accepted.append(time.time() - start_at)

        try:
            async with asyncio.timeout(max(0.0, start_at + duration - time.time())):
                await asyncio.gather(*(send() for _ in range(concurrency)))
        except TimeoutError:
            pass
        await client.online.close(session.reference_number)
    print(json.dumps({"accepted": accepted, "rate_limited": refused, "gave_up": gave_up}), flush=True)


def run_strategy(limits_url: str, processes: int, duration: float, concurrency: int, seed: int) -> dict[str, Any]:
    with SimulatorProcess(seed=seed) as base_url:
        start_at = time.time() + 12 + 2 * processes  # every process logs in and opens its session before this
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    base_url,
                    limits_url,
                    str(seed * 100 + i),
                    str(start_at),
                    str(duration),
                    str(concurrency),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]
        outputs = [
            json.loads(child.communicate(timeout=duration + 300)[0].strip().splitlines()[-1]) for child in children
        ]
    accepted = sum(1 for out in outputs for t in out["accepted"] if t <= duration)
    return {
        "accepted": accepted,
        "rate_limited": sum(out["rate_limited"] for out in outputs),
        "gave_up": sum(out["gave_up"] for out in outputs),
        "per_process": [sum(1 for t in out["accepted"] if t <= duration) for out in outputs],
    }


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.99) - 1] * 1e6


async def admission_cost(limits_url: str, rounds: int) -> list[tuple[str, float, float]]:
    """p50/p99 microseconds of one admission (backend call, and a full acquire with global) per backend."""
    roomy = WindowLimits(10**6, 10**7, 10**8)  # never refuses: the cost of an admission, not of a wait
    store = RedisLimits.from_url(limits_url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
    rows: list[tuple[str, float, float]] = []
    backends: list[tuple[str, Any, Any]] = [
        ("memory", MemoryBackend(), RateLimiter({"invoiceSend": roomy, "global": roomy})),
        ("redis", store.backend("bench", "ctx:Nip:1"), store.limiter_for("bench", "Nip:1", {"invoiceSend": roomy,
                                                                                         "global": roomy})),
    ]  # fmt: skip
    for name, backend, limiter in backends:
        clock = time.perf_counter
        samples = []
        for _ in range(rounds):
            t0 = clock()
            await backend.try_admit("invoiceSend", roomy, time.time())
            samples.append(clock() - t0)
        p50, p99 = _percentiles(samples)
        rows.append((f"{name}: Backend.try_admit", p50, p99))
        samples = []
        for _ in range(rounds):
            t0 = clock()
            await limiter.acquire("invoiceSend")
            samples.append(clock() - t0)
        p50, p99 = _percentiles(samples)
        rows.append((f"{name}: RateLimiter.acquire (+global)", p50, p99))
    await store.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--worker", nargs=6, metavar=("BASE_URL", "LIMITS_URL", "SEED", "START", "DURATION", "TASKS"))
    args = parser.parse_args()
    if args.worker:
        base_url, limits_url, seed, start_at, duration, tasks = args.worker
        asyncio.run(
            worker(
                base_url,
                limits_url,
                int(seed),
                start_at=float(start_at),
                duration=float(duration),
                concurrency=int(tasks),
            )
        )
        return
    limits = RATE_LIMIT_GROUPS["invoiceSend"]
    bound = greedy_bound(args.duration, list(limits.windows()))
    with RedisProcess() as redis_url:
        shared = run_strategy(redis_url, args.processes, args.duration, args.concurrency, seed=1)
        alone = run_strategy("memory://", args.processes, args.duration, args.concurrency, seed=2)
        costs = asyncio.run(admission_cost(redis_url, args.rounds))
    print(f"machine: {describe()}, load {tuple(round(x, 2) for x in os.getloadavg())}")
    print(
        f"{args.processes} processes x {args.concurrency} tasks, one context, {args.duration:.0f} s, invoiceSend "
        f"{limits.per_second}/s {limits.per_minute}/min {limits.per_hour}/h; best possible: {bound} invoices"
    )
    print(f"{'limits':<22}{'accepted':>10}{'of best':>10}{'429s':>8}{'gave up':>9}  per process")
    for name, figures in (("shared (Redis)", shared), ("per process (memory)", alone)):
        share = figures["accepted"] / bound if bound else 0.0
        print(
            f"{name:<22}{figures['accepted']:>10}{share:>10.1%}{figures['rate_limited']:>8}{figures['gave_up']:>9}"
            f"  {figures['per_process']}"
        )
    print(f"cost of one admission over {args.rounds} rounds (Redis on loopback):")
    print(f"{'':<40}{'p50 us':>10}{'p99 us':>10}")
    for name, p50, p99 in costs:
        print(f"{name:<40}{p50:>10.1f}{p99:>10.1f}")


if __name__ == "__main__":
    main()
