"""Single invoice download by KSeF number, checked against ``x-ms-meta-hash``, retrying "not available yet"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ksef_async._logging import extras, get_logger
from ksef_async.core.codes import ExceptionCode
from ksef_async.core.polling import Backoff, PollSchedule
from ksef_async.errors import BadRequestError, DeadlineExceededError
from ksef_async.resources.retrieval import RetrievalResource

__all__ = ["NOT_AVAILABLE_YET", "NOT_FOUND", "download_invoice"]

logger = get_logger("retrieval")

NOT_FOUND = ExceptionCode.INVOICE_NOT_FOUND
"""KSeF exception code: no invoice with that KSeF number (for this context)."""
NOT_AVAILABLE_YET = ExceptionCode.INVOICE_NOT_AVAILABLE_YET
"""KSeF exception code: the invoice is processed but not available for download yet."""


async def download_invoice(
    retrieval: RetrievalResource,
    ksef_number: str,
    *,
    max_wait: float | None = 600.0,
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bytes:
    """Return one invoice's XML (``GET /invoices/ksef/{ksefNumber}``), its SHA-256 checked.

    21165 (not available yet) is retried with back-off until ``max_wait``; every try spends the small
    ``invoiceDownload`` budget (64/h), so the default back-off starts at 5 s and grows to 60 s.

    Raises:
        BadRequestError: 21164 (no such invoice) or another 400.
        DeadlineExceededError: Still 21165 after ``max_wait`` seconds.
        IntegrityError: The bytes do not match ``x-ms-meta-hash``.
    """
    start = clock()
    schedule = PollSchedule(
        backoff or Backoff(initial=5.0, factor=2.0, maximum=60.0), None if max_wait is None else start + max_wait
    )
    while True:
        try:
            return await retrieval.get_invoice(ksef_number)
        except BadRequestError as exc:
            if not exc.has_code(NOT_AVAILABLE_YET):
                raise
        delay = schedule.next_delay(clock())
        if delay is None:
            raise DeadlineExceededError(
                f"invoice {ksef_number}: still not available (21165) after {clock() - start:.1f} s"
            )
        logger.info("invoice not available yet (21165), retrying", extra=extras(ksef_number=ksef_number, delay=delay))
        await sleep(delay)
