"""Log messages name what they are about in their text (reference numbers, counts), not only in ``extra``;
transport retries log at INFO with their reason and WARNING only when they give up."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ksef_async import OnlineSender
from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.errors import ServerError
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.transport import RetryPolicy

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.01, wait_jitter=0.0)
CONFIG = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), sync_rate_limits=False, retry=FAST_RETRY)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("ksef_async") and r.levelno == level]


async def test_messages_carry_reference_numbers_and_retries_their_reason(
    ksef_simulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], faults="api-error=1:2", seed=9
    )
    docs = [data for _, data in InvoiceFactory(DEFAULT_NIP, seed=101).iter(2)]
    caplog.set_level(logging.INFO, logger="ksef_async")
    async with KsefClient(
        sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP, config=CONFIG
    ) as client:
        with pytest.raises(ServerError):
            await client.login()  # both attempts of its first call answer 503
        (retry_info,) = [m for m in messages(caplog, logging.INFO) if m.startswith("retrying ")]
        operation = retry_info.split()[1]  # the login's first call (the MF keys)
        assert retry_info.startswith(f"retrying {operation} (attempt 2 of 2) after: HTTP 503")
        gave_up = [m for m in messages(caplog, logging.WARNING) if m.startswith("giving up")]
        assert gave_up == [gave_up[0]]
        assert gave_up[0].startswith(f"giving up {operation} after 2 attempts: HTTP 503")
        assert not any("retrying" in m for m in messages(caplog, logging.WARNING))
        caplog.clear()
        async with OnlineSender(client) as sender:
            outcomes = [await sender.submit(doc) for doc in docs]
    ref = outcomes[0].session_reference_number
    info = messages(caplog, logging.INFO)
    assert f"online session {ref} opened for FA (3) (session 1 of this sender)" in info
    for outcome in outcomes:
        assert f"invoice {outcome.name} sent in session {ref} as {outcome.reference_number}" in info
        assert any(
            m.startswith(f"invoice {outcome.name} ({outcome.reference_number}) in session {ref}: 200") for m in info
        )
    assert f"online session {ref} retired (closing) after 2 invoices" in info
    assert f"online session {ref} closed: status 200, 2 invoices, 1 UPO pages" in info
