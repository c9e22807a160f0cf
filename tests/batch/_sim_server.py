"""A simulator in its own process for the batch CLI kill tests: writes ``ready.json``, serves until killed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator


async def main(ready: Path, faults: str) -> None:
    async with KsefSimulator(
        [(DEFAULT_NIP, DEFAULT_TOKEN)], seed=61, rate_limits="off", faults=faults, storage_delay=0.0
    ) as sim:
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps({"base_url": sim.base_url}))
        tmp.replace(ready)
        await asyncio.Event().wait()  # serve until killed


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
