"""Helpers for the batch engine tests: a logged-in client on a simulator, a sender, simulator-side counts."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.batch.events import BatchEvent
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

NIP = DEFAULT_NIP
TOKEN = DEFAULT_TOKEN
SimFactory = Callable[..., Awaitable[KsefSimulator]]
"""The plugin's ``ksef_simulator_factory`` fixture."""
FAST = Backoff(initial=0.01, factor=1.5, maximum=0.05)


def fast_config(**kwargs: Any) -> SendConfig:
    """A config whose waits are short (the simulator answers at once)."""
    options: dict[str, Any] = {
        "part_backoff": FAST,
        "open_backoff": FAST,
        "status_backoff": FAST,
        "process_timeout": 60.0,
    }
    options.update(kwargs)
    return SendConfig(**options)


@contextlib.asynccontextmanager
async def sender_for(
    sim: KsefSimulator,
    state_dir: Path,
    config: SendConfig | None = None,
    on_event: Callable[[BatchEvent], None] | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> AsyncIterator[BatchSender]:
    """A `BatchSender` over a client logged in to ``sim``'s seeded context."""
    cfg = config or fast_config()
    client_config = ClientConfig(storage_connections=cfg.concurrency)
    async with KsefClient(
        sim.base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, config=client_config
    ) as client:
        if now is None:
            yield BatchSender(client, state_dir, cfg, on_event=on_event)
        else:
            yield BatchSender(client, state_dir, cfg, on_event=on_event, now=now)


def accepted_per_number(sim: KsefSimulator) -> Counter[str]:
    """How many times the simulator accepted each invoice number (P_2)."""
    return Counter(inv.invoice_number for inv in sim.state.invoices.values())


def batch_sessions(sim: KsefSimulator) -> list[Any]:
    """The simulator's batch sessions."""
    return [s for s in sim.state.sessions.values() if s.kind.value == "Batch"]
