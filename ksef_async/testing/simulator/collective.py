"""The simulator's collective identifiers (``/collective-identifiers*``): generation, the two lists and invoices.

Facts (spec 2.9.0 and the 2.7-2.9 notes): a collective identifier (CI) groups >= 2 invoices of **one seller**
(71004) without duplicates (71005); every KSeF number must name an invoice the context can see (71001); one
invoice may be in at most 132 CIs per context (71002); a CI holds at most the context limit
``collectiveIdentifier.maxInvoices`` (default 500) invoices. The CI number is
``NIP-IZYYYYMM-FFFFFFFFFFFF-CC``, 35 characters, ``CC`` the CRC-8 (poly 0x07, init 0) of the first 32 characters,
as the spec describes. ``payment`` and ``description`` are shown only to the CI's creator or to a party of the
invoice (seller or buyer); otherwise they are omitted and ``detailsHidden`` is true. The lists are sorted as the
spec's ``x-sort`` says and paged by ``x-continuation-token`` (page sizes 10..200, invoices 10..500).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from ksef_async.core.identifiers import crc8
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import ContextKey, SimState, StoredInvoice, iso

__all__ = [
    "HANDLERS",
    "MAX_CIS_PER_INVOICE",
    "MAX_DATE_RANGE",
    "MAX_NUMBERS_PER_INVOICE_QUERY",
    "CollectiveEntry",
    "CollectiveRecord",
    "collective_number",
    "records_of",
]

MAX_CIS_PER_INVOICE = 132
"""An invoice belongs to at most this many collective identifiers in one context (71002)."""
MAX_NUMBERS_PER_INVOICE_QUERY = 10
"""``collectiveIdentifierNumbers`` of POST /collective-identifiers/invoices: at most this many."""
MAX_DATE_RANGE = dt.timedelta(days=100)
"""The widest ``dateCreatedFrom``..``dateCreatedTo`` window of POST /collective-identifiers/query."""
_MAX_DESCRIPTION = 512
_BAD = "Błąd walidacji danych wejściowych."
_CONTINUATION = "x-continuation-token"


@dataclass(frozen=True)
class CollectiveEntry:
    """One invoice of a collective identifier, with the optional details its creator gave."""

    ksef_number: str
    payment: dict[str, Any] | None
    description: str | None

    @property
    def has_details(self) -> bool:
        """Whether a payment or a description was given."""
        return self.payment is not None or self.description is not None


@dataclass(eq=False)
class CollectiveRecord:
    """A generated collective identifier."""

    number: str
    context: ContextKey
    """The context that generated it."""
    seller_nip: str
    created: dt.datetime
    entries: list[CollectiveEntry] = field(default_factory=list)


_RECORDS: WeakKeyDictionary[SimState, dict[str, CollectiveRecord]] = WeakKeyDictionary()


def records_of(state: SimState) -> dict[str, CollectiveRecord]:
    """The collective identifiers of one simulator, by number (created on first use)."""
    return _RECORDS.setdefault(state, {})


def collective_number(seller_nip: str, created: dt.date, technical: str) -> str:
    """``NIP-IZYYYYMM-<12 hex>-<CRC-8>``: the checksum covers the first 32 characters, as for KSeF numbers."""
    head = f"{seller_nip}-IZ{created:%Y%m}-{technical.upper()}"
    return f"{head}-{crc8(head.encode('ascii')):02X}"


def _context(principal: Principal | None) -> ContextKey:
    assert principal is not None
    return principal.operation.context


def _party(inv: StoredInvoice | None, context: ContextKey) -> bool:
    """Whether ``context`` is the seller or the buyer of ``inv``."""
    if inv is None:
        return False
    return (context[0] == "Nip" and inv.seller_nip == context[1]) or (
        inv.buyer_identifier is not None and inv.buyer_identifier[1] == context[1]
    )


def _can_see_invoice(inv: StoredInvoice, context: ContextKey) -> bool:
    return inv.context == context or _party(inv, context)


def _listed_for(record: CollectiveRecord, context: ContextKey) -> bool:
    """CIs of the context's lists: generated in it, or (NIP context) those whose invoices it sold (Podmiot 1)."""
    return record.context == context or (context[0] == "Nip" and record.seller_nip == context[1])


def _bad(*details: str) -> ApiFailure:
    return ApiFailure(400, 21405, _BAD, list(details))


def _int_param(request: web.Request, name: str, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return low
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"'{name}' must be an integer") from None
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low} and {high}")
    return value


def _page(
    rt: Runtime, request: web.Request, scope: str, items: list[dict[str, Any]], high: int
) -> tuple[list[dict[str, Any]], str | None]:
    size = _int_param(request, "pageSize", 10, high)
    offset = rt.parse_continuation(scope, request.headers.get(_CONTINUATION))
    page = items[offset : offset + size]
    token = rt.continuation(scope, offset + size) if offset + size < len(items) else None
    return page, token


def _scope(name: str, context: ContextKey, body: Any, request: web.Request) -> str:
    # A token is bound to the listing it came from: the context, the filters and the page size.
    digest = hashlib.sha256(repr((body, request.query.get("pageSize"))).encode()).hexdigest()[:16]
    return f"{name}:{context[0]}:{context[1]}:{digest}"


def _parse_dt(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise _bad(f"'{name}' is required and must be a date-time")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"'{name}' is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:  # the 2.7.1 notes: the window is in UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _entry(raw: Any, index: int) -> CollectiveEntry:
    where = f"invoices[{index}]"
    if not isinstance(raw, dict):
        raise _bad(f"'{where}' must be an object")
    # The KsefNumber pattern is checked with the rest of the body; a number whose CRC-8 does not match names no
    # invoice, which the operation's table answers with 71001, not 21405.
    number = req(raw, "ksefNumber", str)
    payment = opt(raw, "payment", dict)
    if payment is not None:
        amount = req(payment, "amount", (int, float))
        currency = req(payment, "currency", str)
        if isinstance(amount, bool) or not math.isfinite(amount):
            raise _bad(f"'{where}.payment.amount' must be a number")
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():  # noqa: PLR2004
            raise _bad(f"'{where}.payment.currency' must be a 3-letter currency code")
        payment = {"amount": amount, "currency": currency}
    description = opt(raw, "description", str)
    if description is not None and len(description) > _MAX_DESCRIPTION:
        raise _bad(f"'{where}.description' is longer than {_MAX_DESCRIPTION} characters")
    return CollectiveEntry(number, payment, description)


# -- handlers --------------------------------------------------------------------------------------------------------


async def generate(rt: Runtime, _request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /collective-identifiers``: 201 with ``collectiveIdentifierNumber``; 71001/71002/71004/71005."""
    context = _context(principal)
    raw = req(body, "invoices", list)
    entries = [_entry(item, i) for i, item in enumerate(raw)]
    if len(entries) < 2:  # noqa: PLR2004
        raise _bad("'invoices' needs at least 2 items")
    cap = rt.max_invoices(context, "collectiveIdentifier")
    if len(entries) > cap:
        raise _bad(f"'invoices' has {len(entries)} items; the context's limit is {cap}")
    numbers = [e.ksef_number for e in entries]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise ApiFailure(
            400,
            71005,
            "Numer KSeF występuje wielokrotnie.",
            [f"Numer KSeF {n} występuje więcej niż raz." for n in duplicates],
        )
    now = rt.state.clock.now_dt()
    invoices = {n: rt.state.invoices.get(n) for n in numbers}
    unknown = [
        n
        for n, inv in invoices.items()
        if inv is None or not _can_see_invoice(inv, context) or now < inv.acquisition_date
    ]
    if unknown:
        raise ApiFailure(
            400,
            71001,
            "Nie znaleziono faktury.",
            [f"Faktura o numerze KSeF {n} nie została znaleziona." for n in unknown],
        )
    sellers = {inv.seller_nip for inv in invoices.values() if inv is not None}
    if len(sellers) > 1:
        raise ApiFailure(
            400,
            71004,
            "Faktury muszą być wystawione przez tego samego sprzedawcę.",
            [f"Sprzedawcy: {', '.join(sorted(sellers))}."],
        )
    records = records_of(rt.state)
    full = [
        n
        for n in numbers
        if sum(1 for r in records.values() if r.context == context and any(e.ksef_number == n for e in r.entries))
        >= MAX_CIS_PER_INVOICE
    ]
    if full:
        raise ApiFailure(
            400,
            71002,
            f"Faktura jest już przypisana do maksymalnej liczby ({MAX_CIS_PER_INVOICE}) identyfikatorów zbiorczych.",
            [f"Faktura o numerze KSeF {n} osiągnęła limit identyfikatorów zbiorczych." for n in full],
        )
    (seller,) = sellers
    number = collective_number(seller, now.date(), rt.state.rng.randbytes(6).hex())
    while number in records:  # pragma: no cover - 48 random bits
        number = collective_number(seller, now.date(), rt.state.rng.randbytes(6).hex())
    records[number] = CollectiveRecord(number, context, seller, now, entries)
    return web.json_response({"collectiveIdentifierNumber": number}, status=201)


def _newest_first(records: list[CollectiveRecord]) -> list[CollectiveRecord]:
    return sorted(records, key=lambda r: (r.created, r.number), reverse=True)


async def query(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /collective-identifiers/query``: CIs of the context in a <= 100-day window, newest first."""
    context = _context(principal)
    if not isinstance(body, dict):
        raise _bad("the body must be an object")
    start = _parse_dt(body.get("dateCreatedFrom"), "dateCreatedFrom")
    end = _parse_dt(body.get("dateCreatedTo"), "dateCreatedTo")
    if end < start:
        raise _bad("'dateCreatedTo' is before 'dateCreatedFrom'")
    if end - start > MAX_DATE_RANGE:
        raise _bad(f"the window dateCreatedFrom..dateCreatedTo is longer than {MAX_DATE_RANGE.days} days")
    number = opt(body, "collectiveIdentifierNumber", str)
    count_from = opt(body, "invoiceCountFrom", int)
    count_to = opt(body, "invoiceCountTo", int)
    current = opt(body, "createdInCurrentContext", bool)
    chosen = [
        r
        for r in records_of(rt.state).values()
        if _listed_for(r, context)
        and start <= r.created <= end
        and (number is None or r.number == number)
        and (count_from is None or len(r.entries) >= count_from)
        and (count_to is None or len(r.entries) <= count_to)
        and (current is None or (r.context == context) == current)
    ]
    items = [
        {
            "collectiveIdentifierNumber": r.number,
            "dateCreated": iso(r.created),
            "invoiceCount": len(r.entries),
            "createdInCurrentContext": r.context == context,
        }
        for r in _newest_first(chosen)
    ]
    page, token = _page(rt, request, _scope("ci-query", context, body, request), items, 200)
    answer: dict[str, Any] = {"collectiveIdentifiers": page}
    if token:
        answer["continuationToken"] = token
    return web.json_response(answer)


async def invoices(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /collective-identifiers/invoices``: the invoices of <= 10 CIs, ksefNumber descending."""
    context = _context(principal)
    numbers = req(body, "collectiveIdentifierNumbers", list)
    # CollectiveIdentifierInvoicesQueryRequest sets only a maximum ("Maksymalna liczba to 10."): an empty list is
    # a valid request that names no invoices.
    if len(numbers) > MAX_NUMBERS_PER_INVOICE_QUERY:
        raise _bad(f"'collectiveIdentifierNumbers' takes at most {MAX_NUMBERS_PER_INVOICE_QUERY} numbers")
    if not all(isinstance(n, str) for n in numbers):
        raise _bad("'collectiveIdentifierNumbers' must be strings")
    records = records_of(rt.state)
    unknown = [n for n in numbers if n not in records]
    if unknown:
        raise _bad(*(f"Identyfikator zbiorczy {n} nie istnieje." for n in unknown))
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for n in dict.fromkeys(numbers):
        record = records[n]
        for entry in record.entries:
            item: dict[str, Any] = {"ksefNumber": entry.ksef_number, "collectiveIdentifierNumber": n}
            shown = record.context == context or _party(rt.state.invoices.get(entry.ksef_number), context)
            if shown:
                if entry.payment is not None:
                    item["payment"] = dict(entry.payment)
                if entry.description is not None:
                    item["description"] = entry.description
            item["detailsHidden"] = entry.has_details and not shown
            rows.append((entry.ksef_number, n, item))
    rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
    page, token = _page(rt, request, _scope("ci-invoices", context, body, request), [r[2] for r in rows], 500)
    answer: dict[str, Any] = {"invoices": page}
    if token:
        answer["continuationToken"] = token
    return web.json_response(answer)


async def by_ksef_number(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:  # noqa: ARG001
    """``GET /collective-identifiers/ksef/{ksefNumber}``: the CIs holding an invoice, newest first."""
    context = _context(principal)
    number = request.match_info["ksefNumber"]  # a well-formed number of no invoice (bad CRC-8 too): no CIs
    inv = rt.state.invoices.get(number)
    chosen = [
        r
        for r in records_of(rt.state).values()
        if any(e.ksef_number == number for e in r.entries) and (_listed_for(r, context) or _party(inv, context))
    ]
    items = [
        {
            "collectiveIdentifierNumber": r.number,
            "createdInCurrentContext": r.context == context,
            "dateCreated": iso(r.created),
        }
        for r in _newest_first(chosen)
    ]
    page, token = _page(rt, request, _scope("ci-ksef", context, number, request), items, 200)
    answer: dict[str, Any] = {"collectiveIdentifiers": page}
    if token:
        answer["continuationToken"] = token
    return web.json_response(answer)


HANDLERS = {
    "post_collective_identifiers": generate,
    "post_collective_identifiers_query": query,
    "post_collective_identifiers_invoices": invoices,
    "get_collective_identifiers_ksef_by_ksef_number": by_ksef_number,
}
"""Operation id -> handler, merged into the application's routing table."""
