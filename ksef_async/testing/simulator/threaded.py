"""Serve a `KsefSimulator` from its own event-loop thread, for testing synchronous or subprocess code against it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ksef_async.testing.simulator.app import KsefSimulator

__all__ = ["serve_in_thread"]


@contextmanager
def serve_in_thread(sim: KsefSimulator, *, timeout: float = 60.0) -> Iterator[KsefSimulator]:
    """Start ``sim`` on a new event loop in a daemon thread; stop it and the loop on exit.

    ``with serve_in_thread(KsefSimulator(contexts=[(nip, token)])) as sim:`` then hands ``sim.base_url`` to a
    CLI run with `subprocess`, a synchronous client or anything else that cannot share the caller's event loop.

    Args:
        sim: A simulator that is not started yet.
        timeout: Seconds to wait for the simulator to start, to stop, and for the thread to end.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="ksef-simulator", daemon=True)
    thread.start()
    try:
        try:
            asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout)
            yield sim
        finally:
            # Also after a failed start: it may have bound the runner and created the spool directory.
            asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        # A loop still running in a thread that did not end cannot be closed; the daemon thread dies with the process.
        if not thread.is_alive():
            loop.close()
