"""A simulator in its own process for the CLI and kill -9 tests: seeds invoices, writes ``ready.json``, serves."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

from ksef_async.core.ratelimit import WindowLimits
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret


async def main(ready: Path, count: int, package: int) -> None:
    async with KsefSimulator([(DEFAULT_NIP, DEFAULT_TOKEN)], seed=5, storage_delay=0.0) as sim:
        sim.rate_limiter.set_limits(dict.fromkeys(RATE_LIMIT_GROUPS, WindowLimits(1_000, 100_000, 1_000_000)))
        simret.settings(sim).max_package_invoices = package
        now = sim.clock.now_dt()
        numbers = simret.seed_invoices(
            sim, DEFAULT_NIP, count, now - dt.timedelta(days=40), now - dt.timedelta(hours=1)
        )
        info = {"base_url": sim.base_url, "numbers": numbers, "since": (now - dt.timedelta(days=41)).isoformat()}
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(ready)
        await asyncio.Event().wait()  # serve until killed


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
