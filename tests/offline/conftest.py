"""Shared helpers of the offline tests: a quick client, invoices, a broken copy of an invoice."""

from __future__ import annotations

import datetime as dt

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.engine import SendConfig
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))
FAST = Backoff(initial=0.01, factor=1.5, maximum=0.05)


def client_for(sim: KsefSimulator) -> KsefClient:
    return KsefClient(sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP, config=QUICK)


def fast_batch(*, offline_mode: bool = False) -> SendConfig:
    return SendConfig(
        part_backoff=FAST,
        open_backoff=FAST,
        status_backoff=FAST,
        process_timeout=60.0,
        use_context_limits=False,
        offline_mode=offline_mode,
    )


def yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def broken(invoice: bytes) -> bytes:
    """The invoice with an element its schema does not allow: well-formed XML that KSeF rejects (450)."""
    marker = b"</Faktura>"
    assert marker in invoice
    return invoice.replace(marker, b"<Nieznany>x</Nieznany>" + marker)
