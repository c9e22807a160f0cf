"""Enqueue one job per context and print each job's report summary when it is done.

    python examples/enqueue.py https://api-test.ksef.mf.gov.pl/v2 /shared/state 5265877635=/shared/in/acme ...

``/shared/state`` must be reachable by every worker (the batch plan lives there, so a job taken over from a dead
worker resumes instead of sending again). The job id is derived from the context and the state directory, so
enqueueing the same work twice does not create a second job.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from arq import create_pool
from arq.connections import RedisSettings


async def main(base_url: str, state_root: Path, pairs: list[str]) -> None:
    """Enqueue ``NIP=DIR`` pairs and print each job's summary when it finishes."""
    pool = await create_pool(RedisSettings.from_dsn(os.environ.get("KSEF_ASYNC_QUEUE_URL", "redis://127.0.0.1:6379/0")))
    jobs = []
    for pair in pairs:
        nip, _, directory = pair.partition("=")
        state_dir = state_root / nip
        job = await pool.enqueue_job(
            "send_context",
            {"nip": nip, "input": directory, "state_dir": str(state_dir), "base_url": base_url},
            _job_id=f"ksef-send:{nip}:{state_dir}",
        )
        if job is not None:
            jobs.append((nip, job))
    for nip, job in jobs:
        report = await job.result(timeout=None)
        print(nip, report["summary"])
    await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3:]))
