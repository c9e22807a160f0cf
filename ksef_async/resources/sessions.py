"""``client.sessions``: session lists and status, the invoice lists of a session, UPO download, status polling."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ksef_async.core.codes import SESSION_PENDING
from ksef_async.core.polling import Backoff
from ksef_async.models import (
    SessionInvoicesResponse,
    SessionInvoiceStatusResponse,
    SessionsQueryResponse,
    SessionsQueryResponseItem,
    SessionStatusResponse,
)
from ksef_async.resources._base import Resource, poll_until
from ksef_async.transport import HASH_HEADER, check_hash

__all__ = ["SESSION_PENDING_CODES", "SessionsResource"]

SESSION_PENDING_CODES = SESSION_PENDING
"""Session status codes that are not final: open (100), processing (150), closed and awaiting processing (170)."""

_XML = {"Accept": "application/xml"}


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class SessionsResource(Resource):
    """The ``/sessions`` read operations (common to online and batch sessions)."""

    async def list(
        self,
        session_type: str,
        *,
        page_size: int | None = None,
        reference_number: str | None = None,
        statuses: Iterable[str] = (),
        date_created_from: dt.datetime | None = None,
        date_created_to: dt.datetime | None = None,
        date_closed_from: dt.datetime | None = None,
        date_closed_to: dt.datetime | None = None,
        date_modified_from: dt.datetime | None = None,
        date_modified_to: dt.datetime | None = None,
    ) -> AsyncIterator[SessionsQueryResponseItem]:
        """``GET /sessions``: sessions of ``session_type`` (``Online`` or ``Batch``), following continuation tokens.

        ``statuses`` takes ``InProgress``, ``Succeeded``, ``Failed``, ``Cancelled`` (the parameter is repeated).
        """
        params: list[tuple[str, Any]] = [("sessionType", session_type)]
        for name, value in (
            ("pageSize", page_size),
            ("referenceNumber", reference_number),
            ("dateCreatedFrom", _iso(date_created_from)),
            ("dateCreatedTo", _iso(date_created_to)),
            ("dateClosedFrom", _iso(date_closed_from)),
            ("dateClosedTo", _iso(date_closed_to)),
            ("dateModifiedFrom", _iso(date_modified_from)),
            ("dateModifiedTo", _iso(date_modified_to)),
        ):
            if value is not None:
                params.append((name, value))
        params.extend(("statuses", status) for status in statuses)
        async for page in self._pages("get_sessions", SessionsQueryResponse, params=params):
            for item in page.sessions:
                yield item

    async def status(self, reference_number: str) -> SessionStatusResponse:
        """``GET /sessions/{referenceNumber}``: the status of one session (with UPO links once processed)."""
        return await self._get_model(
            "get_sessions_by_reference_number",
            SessionStatusResponse,
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )

    async def wait_until_processed(
        self, reference_number: str, *, max_wait: float | None = 600.0, backoff: Backoff | None = None
    ) -> SessionStatusResponse:
        """Poll the session status until its code is final (not 100, 150 or 170).

        A failure code is returned, not raised: the caller decides what a failed session means for it.

        Raises:
            DeadlineExceededError: Still not final after ``max_wait`` seconds.
        """
        return await poll_until(
            lambda: self.status(reference_number),
            lambda s: s.status.code not in SESSION_PENDING_CODES,
            what=f"session {reference_number}",
            max_wait=max_wait,
            backoff=backoff,
        )

    async def invoices(
        self, reference_number: str, *, page_size: int | None = None
    ) -> AsyncIterator[SessionInvoiceStatusResponse]:
        """``GET /sessions/{referenceNumber}/invoices``: every invoice of the session with its status."""
        async for item in self._invoice_pages("get_sessions_invoices", reference_number, page_size):
            yield item

    async def failed_invoices(
        self, reference_number: str, *, page_size: int | None = None
    ) -> AsyncIterator[SessionInvoiceStatusResponse]:
        """``GET /sessions/{referenceNumber}/invoices/failed``: the rejected invoices of the session."""
        async for item in self._invoice_pages("get_sessions_invoices_failed", reference_number, page_size):
            yield item

    async def _invoice_pages(
        self, op_id: str, reference_number: str, page_size: int | None
    ) -> AsyncIterator[SessionInvoiceStatusResponse]:
        params = None if page_size is None else {"pageSize": page_size}
        async for page in self._pages(
            op_id,
            SessionInvoicesResponse,
            params=params,
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        ):
            for item in page.invoices:
                yield item

    async def upo(self, reference_number: str, upo_reference_number: str) -> bytes:
        """``GET /sessions/{referenceNumber}/upo/{upoReferenceNumber}``: one page of the session UPO (XML).

        Raises:
            IntegrityError: The bytes do not match ``x-ms-meta-hash``.
        """
        return await self._xml(
            "get_sessions_upo_by_upo_reference_number",
            {"referenceNumber": reference_number, "upoReferenceNumber": upo_reference_number},
            reference_number,
        )

    async def invoice_upo(self, reference_number: str, invoice_reference_number: str) -> bytes:
        """``GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}/upo``: one invoice's UPO (XML)."""
        return await self._xml(
            "get_sessions_invoices_upo",
            {"referenceNumber": reference_number, "invoiceReferenceNumber": invoice_reference_number},
            reference_number,
        )

    async def invoice_upo_by_ksef_number(self, reference_number: str, ksef_number: str) -> bytes:
        """``GET /sessions/{referenceNumber}/invoices/ksef/{ksefNumber}/upo``: one invoice's UPO (XML)."""
        return await self._xml(
            "get_sessions_invoices_ksef_upo",
            {"referenceNumber": reference_number, "ksefNumber": ksef_number},
            reference_number,
        )

    async def download_upo(self, download_url: str) -> bytes:
        """Download a UPO from its pre-signed ``downloadUrl``/``upoDownloadUrl`` (no token, not rate-limited).

        Raises:
            IntegrityError: The bytes do not match ``x-ms-meta-hash``.
        """
        return await self._storage.download(download_url)

    async def _xml(self, op_id: str, path_params: dict[str, str], reference_number: str) -> bytes:
        response = await self._send(op_id, path_params=path_params, headers=_XML, reference_number=reference_number)
        check_hash(response.body, response.headers.get(HASH_HEADER), op_id)
        return response.body
