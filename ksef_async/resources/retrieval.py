"""``client.retrieval``: metadata query pages, export start and status, single invoice download, part streaming."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from contextlib import AbstractAsyncContextManager

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.codes import EXPORT_FAILURES, ExceptionCode, ExportStatus
from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, MfPublicKey, SessionKey
from ksef_async.core.polling import Backoff
from ksef_async.core.windows import require_aware
from ksef_async.errors import BadRequestError, DateRangeRefusedError, ExportFailedError
from ksef_async.models import (
    CompressionType,
    ExportInvoicesResponse,
    InvoiceExportRequest,
    InvoiceExportStatusResponse,
    InvoiceQueryFilters,
    QueryInvoicesMetadataResponse,
    SortOrder,
)
from ksef_async.models.converter import structure, unstructure
from ksef_async.resources._base import Resource, poll_until
from ksef_async.resources._keys import encryption_info, with_key_rotation
from ksef_async.resources.security import SecurityResource
from ksef_async.transport import ApiTransport, StorageTransport
from ksef_async.transport._storage import HASH_HEADER, StorageStream, check_hash

__all__ = [
    "EXPORT_FAILURE_CODES",
    "EXPORT_PENDING_CODE",
    "VALIDATION_CODE",
    "WARSAW",
    "RetrievalResource",
    "aware",
]

logger = get_logger("retrieval")

WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")
"""Europe/Warsaw: the zone of KSeF's offset-less response dates and of the CLI's offset-less input."""

EXPORT_PENDING_CODE = ExportStatus.IN_PROGRESS
"""Export status: in progress."""
EXPORT_FAILURE_CODES = EXPORT_FAILURES
"""Export status codes that end an export without a package (expired, key error, from > HWM, unknown, cancelled)."""


def aware(moment: dt.datetime) -> dt.datetime:
    """Return a date-time *received from KSeF* with an explicit offset (a naive one is read as Europe/Warsaw).

    Never for caller input: request date-times without an offset are refused (`ksef_async.core.windows`).
    """
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=WARSAW)


VALIDATION_CODE = ExceptionCode.VALIDATION_ERROR
"""KSeF exception code: input validation failed (the details name the field and the rule)."""


def _explicit_offsets(filters: InvoiceQueryFilters) -> InvoiceQueryFilters:
    # Never send a date-time without an offset (2.9.0 accepts only 'Z' or an explicit one), and never guess the
    # zone of a naive value: refuse it, naming the field, before anything is sent.
    date_range = filters.date_range
    fixed = attrs.evolve(
        date_range,
        from_=require_aware(date_range.from_, "dateRange.from"),
        to=None if date_range.to is None else require_aware(date_range.to, "dateRange.to"),
    )
    return attrs.evolve(filters, date_range=fixed)


def _date_range_refusal(exc: BadRequestError) -> BadRequestError:
    """``exc`` as a `DateRangeRefusedError` when it is a 21405 whose details name ``dateRange``, else ``exc``."""
    if any(e.code == VALIDATION_CODE and any("dateRange" in d for d in e.details) for e in exc.errors):
        return DateRangeRefusedError(
            exc.status,
            exc.errors,
            title=exc.title,
            reference_number=exc.reference_number,
            trace_id=exc.trace_id,
            operation=exc.operation,
            body=exc.body,
        )
    return exc


class RetrievalResource(Resource):
    """The retrieval operations: metadata query, export start and status, single invoice, export part downloads.

    ``POST /invoices/query/metadata``, ``POST /invoices/exports``, ``GET /invoices/exports/{referenceNumber}``,
    ``GET /invoices/ksef/{ksefNumber}`` and the pre-signed part URLs.

    Args:
        api: The API transport.
        storage: The storage transport.
        security: Where the MF public key for ``encryption`` comes from.
    """

    def __init__(self, api: ApiTransport, storage: StorageTransport, security: SecurityResource) -> None:
        super().__init__(api, storage)
        self._security = security

    async def query_metadata_page(
        self,
        filters: InvoiceQueryFilters,
        *,
        sort_order: SortOrder | str = SortOrder.ASC,
        page_offset: int = 0,
        page_size: int = 250,
    ) -> QueryInvoicesMetadataResponse:
        """One page of ``POST /invoices/query/metadata`` (use `ksef_async.retrieval.iter_metadata` to get all)."""
        params: dict[str, str | int] = {
            "sortOrder": str(sort_order),
            "pageOffset": page_offset,
            "pageSize": page_size,
        }
        body = unstructure(_explicit_offsets(filters))
        try:
            response = await self._send("post_invoices_query_metadata", params=params, json_body=body)
        except BadRequestError as exc:
            raise _date_range_refusal(exc) from None
        return structure(response.json(), QueryInvoicesMetadataResponse)

    async def start_export(
        self,
        filters: InvoiceQueryFilters,
        key: SessionKey,
        *,
        only_metadata: bool = False,
        compression: CompressionType | str = CompressionType.ZIP,
    ) -> str:
        """``POST /invoices/exports`` with ``key`` wrapped under the MF key; return the export's reference number.

        The call is not idempotent (each one spends the hourly export budget), so it is never repeated blindly.
        """
        body_filters = _explicit_offsets(filters)

        async def call(public_key: MfPublicKey) -> str:
            request = InvoiceExportRequest(
                encryption=encryption_info(key, public_key),
                filters=body_filters,
                only_metadata=only_metadata,
                compression_type=compression,
            )
            try:
                response = await self._send("post_invoices_exports", json_body=unstructure(request))
            except BadRequestError as exc:
                raise _date_range_refusal(exc) from None
            return structure(response.json(), ExportInvoicesResponse).reference_number

        reference = await with_key_rotation(self._security, KEY_USAGE_SYMMETRIC, call, what="invoice export")
        logger.info("export started", extra=extras(reference_number=reference, only_metadata=only_metadata))
        return reference

    async def export_status(self, reference_number: str) -> InvoiceExportStatusResponse:
        """``GET /invoices/exports/{referenceNumber}``."""
        return await self._get_model(
            "get_invoices_exports_by_reference_number",
            InvoiceExportStatusResponse,
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )

    async def wait_for_export(
        self, reference_number: str, *, max_wait: float | None = 3600.0, backoff: Backoff | None = None
    ) -> InvoiceExportStatusResponse:
        """Poll an export until it is done (200).

        Raises:
            ExportFailedError: Status 210, 415, 420, 500, 550 (or any other code but 100 and 200).
            DeadlineExceededError: Still at 100 after ``max_wait`` seconds.
        """
        status = await poll_until(
            lambda: self.export_status(reference_number),
            lambda s: s.status.code != EXPORT_PENDING_CODE,
            what=f"export {reference_number}",
            max_wait=max_wait,
            backoff=backoff or Backoff(initial=0.5, factor=1.5, maximum=15.0),
        )
        if status.status.code != ExportStatus.DONE:
            raise ExportFailedError(
                status.status.code,
                status.status.description,
                status.status.details or (),
                reference_number=reference_number,
            )
        return status

    async def get_invoice(self, ksef_number: str) -> bytes:
        """``GET /invoices/ksef/{ksefNumber}``: the invoice XML, checked against ``x-ms-meta-hash``.

        Raises:
            BadRequestError: 21164 (no such invoice) or 21165 (not available yet: retry later).
            IntegrityError: The bytes do not match ``x-ms-meta-hash``.
        """
        response = await self._send(
            "get_invoices_ksef_by_ksef_number",
            path_params={"ksefNumber": ksef_number},
            headers={"Accept": "application/xml"},
            reference_number=ksef_number,
        )
        check_hash(response.body, response.headers.get(HASH_HEADER), f"invoice {ksef_number}")
        return response.body

    def stream_part(self, url: str, *, chunk_size: int = 1 << 20) -> AbstractAsyncContextManager[StorageStream]:
        """Open a pre-signed export part URL (storage session: no token, not rate-limited) for streaming.

        Raises:
            ApiError: The storage answered with an error status (e.g. 403 once the link expired).
            TransportError: The connection failed.
        """
        return self._storage.stream(url, chunk_size=chunk_size)
