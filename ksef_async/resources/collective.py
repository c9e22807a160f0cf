"""``client.collective_identifiers``: generate collective identifiers and page through their lists and invoices.

A collective identifier (``identyfikator zbiorczy``, API 2.7+) groups at least two invoices of one seller under one
35-character number, e.g. ``1111111111-IZ202607-65ED02180000-E7``. The three lists page by the
``x-continuation-token`` header (``continuationToken`` in the body); their methods are async iterators over every
item, bounded: a page that hands back a token already seen raises `ResponseFormatError` instead of looping.
Input is checked before anything is sent and a bad value raises `ConfigurationError` naming the field.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ksef_async.core.identifiers import is_valid_ksef_number
from ksef_async.errors import ConfigurationError, ResponseFormatError
from ksef_async.models import (
    CollectiveIdentifierInvoice,
    CollectiveIdentifierInvoicePayment,
    CollectiveIdentifierInvoicesQueryRequest,
    CollectiveIdentifierInvoicesQueryResponse,
    CollectiveIdentifierInvoicesQueryResponseItem,
    CollectiveIdentifiersByKsefNumberQueryResponse,
    CollectiveIdentifiersByKsefNumberQueryResponseItem,
    CollectiveIdentifiersQueryRequest,
    CollectiveIdentifiersQueryResponse,
    CollectiveIdentifiersQueryResponseItem,
    GenerateCollectiveIdentifierRequest,
    GenerateCollectiveIdentifierResponse,
)
from ksef_async.models.converter import unstructure
from ksef_async.resources._base import CONTINUATION_HEADER, Resource, decode_json, structure_response

__all__ = [
    "DEFAULT_MAX_PAGES",
    "INVOICES_MAX_PAGE_SIZE",
    "LIST_MAX_PAGE_SIZE",
    "MAX_DATE_RANGE",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_NUMBERS_PER_INVOICE_QUERY",
    "MIN_INVOICES",
    "MIN_PAGE_SIZE",
    "CollectiveIdentifiersResource",
    "payment",
    "validate_invoices",
    "validate_window",
]

P = TypeVar("P")

MIN_INVOICES = 2
"""``GenerateCollectiveIdentifierRequest.invoices``: ``minItems``."""
MAX_DESCRIPTION_LENGTH = 512
"""``CollectiveIdentifierInvoice.description``: ``maxLength``."""
MAX_NUMBERS_PER_INVOICE_QUERY = 10
"""``collectiveIdentifierNumbers`` of ``POST /collective-identifiers/invoices``: at most 10."""
MAX_DATE_RANGE = dt.timedelta(days=100)
"""``dateCreatedFrom``..``dateCreatedTo`` of ``POST /collective-identifiers/query``: at most 100 days."""
MIN_PAGE_SIZE = 10
"""``pageSize`` minimum of the three lists."""
LIST_MAX_PAGE_SIZE = 200
"""``pageSize`` maximum of ``/collective-identifiers/query`` and ``/collective-identifiers/ksef/{ksefNumber}``."""
INVOICES_MAX_PAGE_SIZE = 500
"""``pageSize`` maximum of ``/collective-identifiers/invoices``."""
DEFAULT_MAX_PAGES = 10_000
"""Pages an iterator fetches at most before raising (a bound on a server that never stops)."""
_CI_NUMBER_LENGTH = 35


def _page_size(value: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_PAGE_SIZE <= value <= high:
        raise ConfigurationError(f"page_size must be {MIN_PAGE_SIZE}..{high}, got {value!r}")
    return value


def _ksef_number(value: object, name: str) -> str:
    if not isinstance(value, str) or not is_valid_ksef_number(value):
        raise ConfigurationError(f"{name}: not a valid KSeF number ({value!r})")
    return value


def validate_invoices(
    invoices: Iterable[CollectiveIdentifierInvoice | str],
) -> tuple[CollectiveIdentifierInvoice, ...]:
    """Check the invoices of a new collective identifier and return them as models.

    Args:
        invoices: KSeF numbers, or `CollectiveIdentifierInvoice` values carrying ``payment``/``description``.

    Raises:
        ConfigurationError: Fewer than 2 invoices, an invalid or repeated KSeF number, a description over 512
            characters, or a payment amount that is not a finite number; the message names the field.
    """
    items = tuple(
        item if isinstance(item, CollectiveIdentifierInvoice) else CollectiveIdentifierInvoice(ksef_number=item)
        for item in invoices
    )
    if len(items) < MIN_INVOICES:
        raise ConfigurationError(f"invoices: at least {MIN_INVOICES} KSeF numbers are needed, got {len(items)}")
    seen: set[str] = set()
    for index, item in enumerate(items):
        field = f"invoices[{index}]"
        number = _ksef_number(item.ksef_number, f"{field}.ksefNumber")
        if number in seen:
            raise ConfigurationError(f"{field}.ksefNumber: {number} appears more than once")
        seen.add(number)
        if item.description is not None and len(item.description) > MAX_DESCRIPTION_LENGTH:
            raise ConfigurationError(f"{field}.description: longer than {MAX_DESCRIPTION_LENGTH} characters")
        if item.payment is not None:
            amount = item.payment.amount
            if not isinstance(amount, decimal.Decimal) or not amount.is_finite():
                raise ConfigurationError(f"{field}.payment.amount: must be a finite decimal.Decimal")
            currency = str(item.payment.currency)
            if len(currency) != 3 or not currency.isalpha() or not currency.isupper():  # noqa: PLR2004
                raise ConfigurationError(f"{field}.payment.currency: must be a 3-letter ISO 4217 code")
    return items


def validate_window(date_from: dt.datetime, date_to: dt.datetime) -> None:
    """Check a ``dateCreatedFrom``..``dateCreatedTo`` window: both aware, ordered, at most 100 days.

    Raises:
        ConfigurationError: A naive or missing date-time, ``date_to`` before ``date_from``, or a window over 100
            days; the message names the field.
    """
    for name, value in (("dateCreatedFrom", date_from), ("dateCreatedTo", date_to)):
        if not isinstance(value, dt.datetime):
            raise ConfigurationError(f"{name}: a datetime.datetime is required, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigurationError(f"{name}: must be timezone-aware (KSeF reads the window in UTC)")
    if date_to < date_from:
        raise ConfigurationError("dateCreatedTo: before dateCreatedFrom")
    if date_to - date_from > MAX_DATE_RANGE:
        raise ConfigurationError(f"dateCreatedTo: the window is longer than {MAX_DATE_RANGE.days} days")


def payment(amount: decimal.Decimal | int | str, currency: str) -> CollectiveIdentifierInvoicePayment:
    """A ``payment`` value for `CollectiveIdentifierInvoice` (``amount`` is kept exact as a Decimal)."""
    try:
        value = decimal.Decimal(amount)
    except (decimal.InvalidOperation, TypeError, ValueError):
        raise ConfigurationError(f"payment.amount: not a number ({amount!r})") from None
    return CollectiveIdentifierInvoicePayment(amount=value, currency=currency)


class CollectiveIdentifiersResource(Resource):
    """The four ``/collective-identifiers*`` operations (rate-limit group ``collectiveIdentifier``).

    Each needs one of ``InvoiceRead``, ``InvoiceWrite`` or ``CollectiveIdentifierManage`` in the context.
    KSeF's refusals of a generation arrive as `InvoiceNotFoundError` (71001), `CollectiveIdentifierCapError`
    (71002), `DifferentSellersError` (71004) and `DuplicateKsefNumberError` (71005).
    """

    async def create(self, invoices: Iterable[CollectiveIdentifierInvoice | str]) -> str:
        """``POST /collective-identifiers`` (201): generate a collective identifier and return its number.

        Args:
            invoices: At least two KSeF numbers of one seller, each at most once, as strings or as
                `CollectiveIdentifierInvoice` with ``payment`` and ``description``.

        Raises:
            ConfigurationError: Bad input (see `validate_invoices`), before anything is sent.
        """
        request = GenerateCollectiveIdentifierRequest(invoices=validate_invoices(invoices))
        response = await self._send("post_collective_identifiers", json_body=unstructure(request))
        answer = self._structure("post_collective_identifiers", response, GenerateCollectiveIdentifierResponse)
        if len(answer.collective_identifier_number) != _CI_NUMBER_LENGTH:
            raise ResponseFormatError("post_collective_identifiers", ["$.collectiveIdentifierNumber: not 35 chars"])
        return answer.collective_identifier_number

    async def _bounded_pages(
        self,
        op_id: str,
        model: type[P],
        *,
        page_size: int,
        max_pages: int,
        json_body: Any = None,
        path_params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[P]:
        """Yield the pages of a list, refusing a repeated continuation token and stopping after ``max_pages``."""
        if isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1:
            raise ConfigurationError(f"max_pages must be a positive integer, got {max_pages!r}")
        seen: set[str] = set()
        token: str | None = None
        for _ in range(max_pages):
            headers = {CONTINUATION_HEADER: token} if token else None
            response = await self._send(
                op_id,
                params={"pageSize": page_size},
                path_params=path_params,
                json_body=json_body,
                headers=headers,
                idempotent=True,  # read-only queries: safe to retry
            )
            body = decode_json(op_id, response)
            yield structure_response(op_id, body, model)
            token = body.get("continuationToken") if isinstance(body, dict) else None
            if not token:
                return
            if not isinstance(token, str) or token in seen:
                raise ResponseFormatError(op_id, ["$.continuationToken: repeats an earlier page's token"])
            seen.add(token)
        raise ResponseFormatError(op_id, [f"$.continuationToken: still present after {max_pages} pages"])

    async def query_pages(
        self,
        date_from: dt.datetime,
        date_to: dt.datetime,
        *,
        number: str | None = None,
        invoice_count_from: int | None = None,
        invoice_count_to: int | None = None,
        created_in_current_context: bool | None = None,
        page_size: int = MIN_PAGE_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> AsyncIterator[CollectiveIdentifiersQueryResponse]:
        """``POST /collective-identifiers/query``: pages of the context's CIs created in the window, newest first.

        Args:
            date_from: ``dateCreatedFrom`` (timezone-aware).
            date_to: ``dateCreatedTo`` (timezone-aware, at most 100 days after ``date_from``).
            number: ``collectiveIdentifierNumber``: only this CI.
            invoice_count_from: ``invoiceCountFrom``.
            invoice_count_to: ``invoiceCountTo``.
            created_in_current_context: ``createdInCurrentContext``: only those generated (or not) here.
            page_size: 10..200.
            max_pages: Pages fetched at most.

        Raises:
            ConfigurationError: Bad input, before anything is sent.
        """
        validate_window(date_from, date_to)
        for name, count in (("invoiceCountFrom", invoice_count_from), ("invoiceCountTo", invoice_count_to)):
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
                raise ConfigurationError(f"{name}: must be a non-negative integer, got {count!r}")
        request = CollectiveIdentifiersQueryRequest(
            collective_identifier_number=number,
            date_created_from=date_from,
            date_created_to=date_to,
            invoice_count_from=invoice_count_from,
            invoice_count_to=invoice_count_to,
            created_in_current_context=created_in_current_context,
        )
        async for page in self._bounded_pages(
            "post_collective_identifiers_query",
            CollectiveIdentifiersQueryResponse,
            page_size=_page_size(page_size, LIST_MAX_PAGE_SIZE),
            max_pages=max_pages,
            json_body={k: v for k, v in unstructure(request).items() if v is not None},
        ):
            yield page

    async def query(
        self,
        date_from: dt.datetime,
        date_to: dt.datetime,
        **filters: Any,
    ) -> AsyncIterator[CollectiveIdentifiersQueryResponseItem]:
        """Every item of `query_pages` (same arguments), newest first."""
        async for page in self.query_pages(date_from, date_to, **filters):
            for item in page.collective_identifiers:
                yield item

    async def invoice_pages(
        self,
        numbers: Sequence[str],
        *,
        page_size: int = MIN_PAGE_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> AsyncIterator[CollectiveIdentifierInvoicesQueryResponse]:
        """``POST /collective-identifiers/invoices``: pages of the invoices of 1..10 CIs, ksefNumber descending.

        ``payment`` and ``description`` come only to the CI's creator or a party of the invoice; otherwise
        ``detailsHidden`` is true.

        Args:
            numbers: 1 to 10 collective identifier numbers (35 characters each).
            page_size: 10..500.
            max_pages: Pages fetched at most.

        Raises:
            ConfigurationError: Bad input, before anything is sent.
        """
        if isinstance(numbers, str):
            raise ConfigurationError("collectiveIdentifierNumbers: give a sequence of numbers, not one string")
        values = list(numbers)
        if not 1 <= len(values) <= MAX_NUMBERS_PER_INVOICE_QUERY:
            raise ConfigurationError(
                f"collectiveIdentifierNumbers: 1 to {MAX_NUMBERS_PER_INVOICE_QUERY} numbers, got {len(values)}"
            )
        for index, value in enumerate(values):
            if not isinstance(value, str) or len(value) != _CI_NUMBER_LENGTH or "-IZ" not in value:
                raise ConfigurationError(f"collectiveIdentifierNumbers[{index}]: not a collective identifier number")
        if len(set(values)) != len(values):
            raise ConfigurationError("collectiveIdentifierNumbers: a number appears more than once")
        request = CollectiveIdentifierInvoicesQueryRequest(collective_identifier_numbers=tuple(values))
        async for page in self._bounded_pages(
            "post_collective_identifiers_invoices",
            CollectiveIdentifierInvoicesQueryResponse,
            page_size=_page_size(page_size, INVOICES_MAX_PAGE_SIZE),
            max_pages=max_pages,
            json_body=unstructure(request),
        ):
            yield page

    async def invoices(
        self, numbers: Sequence[str], **options: Any
    ) -> AsyncIterator[CollectiveIdentifierInvoicesQueryResponseItem]:
        """Every item of `invoice_pages` (same arguments)."""
        async for page in self.invoice_pages(numbers, **options):
            for item in page.invoices:
                yield item

    async def by_ksef_number_pages(
        self,
        ksef_number: str,
        *,
        page_size: int = MIN_PAGE_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> AsyncIterator[CollectiveIdentifiersByKsefNumberQueryResponse]:
        """``GET /collective-identifiers/ksef/{ksefNumber}``: pages of the CIs an invoice belongs to, newest first.

        Raises:
            ConfigurationError: An invalid KSeF number or page size, before anything is sent.
        """
        number = _ksef_number(ksef_number, "ksefNumber")
        async for page in self._bounded_pages(
            "get_collective_identifiers_ksef_by_ksef_number",
            CollectiveIdentifiersByKsefNumberQueryResponse,
            page_size=_page_size(page_size, LIST_MAX_PAGE_SIZE),
            max_pages=max_pages,
            path_params={"ksefNumber": number},
        ):
            yield page

    async def by_ksef_number(
        self, ksef_number: str, **options: Any
    ) -> AsyncIterator[CollectiveIdentifiersByKsefNumberQueryResponseItem]:
        """Every item of `by_ksef_number_pages` (same arguments)."""
        async for page in self.by_ksef_number_pages(ksef_number, **options):
            for item in page.collective_identifiers:
                yield item
