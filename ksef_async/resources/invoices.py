"""``client.invoices``: the status of one invoice sent in a session (retrieval operations come later)."""

from __future__ import annotations

from ksef_async.core.codes import INVOICE_PENDING
from ksef_async.core.polling import Backoff
from ksef_async.models import SessionInvoiceStatusResponse
from ksef_async.resources._base import Resource, poll_until

__all__ = ["INVOICE_PENDING_CODES", "InvoicesResource"]

INVOICE_PENDING_CODES = INVOICE_PENDING
"""Invoice status codes that are not final: accepted for processing (100), processing (150)."""


class InvoicesResource(Resource):
    """``GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}`` and polling on it."""

    async def status(
        self, session_reference_number: str, invoice_reference_number: str
    ) -> SessionInvoiceStatusResponse:
        """The status of one invoice of a session."""
        return await self._get_model(
            "get_sessions_invoices_by_invoice_reference_number",
            SessionInvoiceStatusResponse,
            path_params={
                "referenceNumber": session_reference_number,
                "invoiceReferenceNumber": invoice_reference_number,
            },
            reference_number=invoice_reference_number,
        )

    async def wait_for_status(
        self,
        session_reference_number: str,
        invoice_reference_number: str,
        *,
        max_wait: float | None = 300.0,
        backoff: Backoff | None = None,
    ) -> SessionInvoiceStatusResponse:
        """Poll one invoice until its status code is final (not 100 or 150); a rejection is returned, not raised.

        Raises:
            DeadlineExceededError: Still processing after ``max_wait`` seconds.
        """
        return await poll_until(
            lambda: self.status(session_reference_number, invoice_reference_number),
            lambda s: s.status.code not in INVOICE_PENDING_CODES,
            what=f"invoice {invoice_reference_number}",
            max_wait=max_wait,
            backoff=backoff,
        )
