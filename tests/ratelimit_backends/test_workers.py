"""arq workers in separate processes: 5 contexts x 2,000 invoices, 2 of 3 workers SIGKILLed mid-run.

Every invoice must be accepted exactly once (the simulator holds 10,000 invoices; no report counts a duplicate), with
0 x 429 (the workers share the limits through Redis), and every job's report must be complete and retrievable.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from ksef_async.core.identifiers import generate_nip
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread

from ._redis import RedisServer, needs_redis

pytestmark = [pytest.mark.anyio, needs_redis, pytest.mark.slow]

CONTEXTS = 5
PER_CONTEXT = 2000


def _contexts() -> list[tuple[str, str]]:
    rng = random.Random(77)
    nips: list[str] = []
    while len(nips) < CONTEXTS:
        nip = generate_nip(rng)
        if nip not in nips:
            nips.append(nip)
    return [(nip, f"20250101-EC-{nip}-0000000000-00|nip-{nip}|" + f"{i + 50:02d}" * 32) for i, nip in enumerate(nips)]


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ksef_async.workers"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def _wait_for(predicate: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_three_workers_two_killed_every_invoice_once(own_redis_server: RedisServer, tmp_path: Path) -> None:
    contexts = _contexts()
    for i, (nip, _) in enumerate(contexts):
        directory = tmp_path / "in" / nip
        directory.mkdir(parents=True)
        for name, data in InvoiceFactory(nip, seed=i).iter(PER_CONTEXT):
            (directory / name.replace("/", "_")).write_bytes(data)
    queue_url = f"redis://127.0.0.1:{own_redis_server.port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {
        "KSEF_ASYNC_QUEUE_URL": queue_url,
        "KSEF_ASYNC_LIMITS_URL": f"redis://127.0.0.1:{own_redis_server.port}/1",
        "KSEF_ASYNC_WORKER_JOBS": "2",
    }
    env |= {f"KSEF_TOKEN_{nip}": token for nip, token in contexts}
    with serve_in_thread(KsefSimulator(contexts=contexts, seed=77, processing_delay=1.0)) as sim:
        workers = [_worker(env) for _ in range(3)]
        pool = await create_pool(RedisSettings.from_dsn(queue_url))
        try:
            jobs = [
                await pool.enqueue_job(
                    "send_context",
                    {
                        "nip": nip,
                        "input": str(tmp_path / "in" / nip),
                        "state_dir": str(tmp_path / "state" / nip),
                        "base_url": sim.base_url,
                        "validate": False,
                    },
                    _job_id=f"send-{nip}",
                )
                for nip, _ in contexts
            ]
            # Kill two workers once batches are under way (sessions opened, parts uploading or processing).
            await _wait_for(lambda: len(sim._state.sessions) >= 2, 180)
            workers[0].send_signal(signal.SIGKILL)
            await _wait_for(lambda: len(sim._state.sessions) >= 3, 180)
            workers[1].send_signal(signal.SIGKILL)
            killed_at = len(sim._state.invoices)
            results = [await job.result(timeout=600, poll_delay=0.5) for job in jobs if job is not None]
        finally:
            for worker in workers:
                worker.kill()
                worker.wait(30)
            await pool.aclose()
    assert len(results) == CONTEXTS
    assert killed_at < CONTEXTS * PER_CONTEXT  # the kills came mid-run
    for result in results:
        summary = result["summary"]
        assert (summary["invoices"], summary["accepted"]) == (PER_CONTEXT, PER_CONTEXT), summary
        assert summary["duplicate"] == summary["unknown"] == summary["rejected"] == 0
    assert any(result["jobTry"] > 1 for result in results)  # a job was taken over from a killed worker
    assert len(sim._state.invoices) == CONTEXTS * PER_CONTEXT  # every invoice once
    assert sim.counters.rate_limited == 0
