"""Invoice metadata and filters: ``POST /invoices/query/metadata`` and ``GET /invoices/ksef/{ksefNumber}``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web
from lxml import etree

from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.retrieval_store import (
    _BAD,
    _DATE_TYPES,
    _SUBJECT_TYPES,
    WARSAW,
    _store,
    hwm,
)
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import ContextKey, StoredInvoice, iso
from ksef_async.xml.auth_request import safe_xml_parser

__all__ = ["MAX_RANGE", "get_invoice", "invoice_metadata", "query_metadata"]


# -- metadata of a stored invoice ------------------------------------------------------------------------------------


def _text(root: Any, path: str) -> str | None:
    node = root.find(path)
    return None if node is None or node.text is None else node.text.strip()


def _amounts(root: Any) -> tuple[Decimal, Decimal, Decimal, str]:
    fa = root.find("{*}Fa")
    currency = (_text(fa, "{*}KodWaluty") if fa is not None else None) or "PLN"
    net = vat = vat_pln = Decimal(0)
    gross = Decimal(0)
    if fa is not None:
        for child in fa:
            name = etree.QName(child).localname
            try:
                value = Decimal((child.text or "").strip())
            except ArithmeticError:
                continue  # not an amount (cannot happen in a valid FA); the XSD check happened at acceptance
            if name.startswith("P_13_"):
                net += value
            elif name.startswith("P_14_") and name.endswith("W"):
                vat_pln += value
            elif name.startswith("P_14_"):
                vat += value
            elif name == "P_15":
                gross = value
    # vatAmount is in PLN: foreign-currency invoices carry the PLN figures in P_14_xW.
    return net, gross, (vat if currency == "PLN" else vat_pln or vat), currency


def invoice_metadata(rt: Runtime, inv: StoredInvoice) -> dict[str, Any]:
    """The spec's ``InvoiceMetadata`` of ``inv`` (JSON-ready; parsed from the XML once, then cached)."""
    cache = _store(rt).metadata
    cached = cache.get(inv)
    if cached is not None:
        return cached
    root = etree.fromstring(inv.content, safe_xml_parser())
    net, gross, vat, currency = _amounts(root)
    seller_name = _text(root, "{*}Podmiot1/{*}DaneIdentyfikacyjne/{*}Nazwa")
    buyer_name = _text(root, "{*}Podmiot2/{*}DaneIdentyfikacyjne/{*}Nazwa")
    self_invoicing = _text(root, "{*}Fa/{*}Adnotacje/{*}P_17") == "1"
    kind, value = inv.buyer_identifier or ("None", "")
    buyer_id: dict[str, Any] = {"type": kind}
    if value:
        buyer_id["value"] = value
    issue = inv.issue_date or inv.invoicing_date.date()
    meta: dict[str, Any] = {
        "ksefNumber": inv.ksef_number,
        "invoiceNumber": inv.invoice_number,
        "issueDate": issue.isoformat(),
        "invoicingDate": iso(inv.invoicing_date),
        "acquisitionDate": iso(inv.acquisition_date),
        "permanentStorageDate": iso(inv.permanent_storage_date),
        "seller": {"nip": inv.seller_nip, **({"name": seller_name} if seller_name else {})},
        "buyer": {"identifier": buyer_id, **({"name": buyer_name} if buyer_name else {})},
        "netAmount": float(net),
        "grossAmount": float(gross),
        "vatAmount": float(vat),
        "currency": currency,
        "invoicingMode": inv.invoicing_mode,
        "invoiceType": _INVOICE_TYPES.get(inv.invoice_type, "Vat"),
        "formCode": dict(inv.form),
        "isSelfInvoicing": self_invoicing,
        "hasAttachment": inv.has_attachment,
        "invoiceHash": inv.invoice_hash,
    }
    cache[inv] = meta
    return meta


_INVOICE_TYPES = {
    "VAT": "Vat",
    "ZAL": "Zal",
    "KOR": "Kor",
    "ROZ": "Roz",
    "UPR": "Upr",
    "KOR_ZAL": "KorZal",
    "KOR_ROZ": "KorRoz",
}
"""``RodzajFaktury`` (FA) -> the spec's ``InvoiceType``."""


# -- filters ---------------------------------------------------------------------------------------------------------


def _parse_dt(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ApiFailure(400, 21405, _BAD, [f"'{name}' must be an ISO 8601 date-time"])
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiFailure(400, 21405, _BAD, [f"'{name}' is not an ISO 8601 date-time: {value!r}"]) from None
    if moment.tzinfo is None:  # 2.9.0: only 'Z' or an explicit offset ("no offset = Warsaw" is gone)
        raise ApiFailure(
            400, 21405, _BAD, [f"'{name}' has no UTC offset: date-times need the 'Z' suffix or an explicit offset"]
        )
    return moment.astimezone(dt.UTC)


MAX_RANGE = dt.timedelta(days=100)
"""``InvoiceQueryFilters.dateRange``: "Maksymalny dozwolony okres wynosi 100 dni w strefie UTC"."""


@dataclass
class _Filters:
    subject_type: str
    date_type: str
    start: dt.datetime
    end: dt.datetime
    hwm: dt.datetime | None
    body: dict[str, Any]
    global_hwm: dt.datetime | None


def _parse_filters(rt: Runtime, filters: Any, *, export: bool) -> _Filters:
    subject = req(filters, "subjectType", str)
    if subject not in _SUBJECT_TYPES:
        raise ApiFailure(400, 21405, _BAD, [f"unknown subjectType {subject!r}"])
    date_range = req(filters, "dateRange", dict)
    date_type = req(date_range, "dateType", str)
    if date_type not in _DATE_TYPES:
        raise ApiFailure(400, 21405, _BAD, [f"unknown dateRange.dateType {date_type!r}"])
    start = _parse_dt(req(date_range, "from", str), "dateRange.from")
    now = rt.state.clock.now_dt()
    raw_to = opt(date_range, "to", str)
    end = now if raw_to is None else _parse_dt(raw_to, "dateRange.to")
    global_mark = hwm(rt) if date_type == "PermanentStorage" else None
    restrict = opt(date_range, "restrictToPermanentStorageHwmDate", bool, default=False)
    after_hwm = bool(restrict) and global_mark is not None and start > global_mark
    if after_hwm and not export:  # checked first: the range itself may then be empty
        raise ApiFailure(
            400,
            21183,
            "Zakres filtrowania wykracza poza dostępny zakres danych.",
            [
                (
                    "Parametr dateRange.from jest późniejszy niż PermanentStorageHwmDate przy włączonym "
                    "restrictToPermanentStorageHwmDate."
                )
            ],
        )
    if end < start and not after_hwm:
        raise ApiFailure(400, 21405, _BAD, ["dateRange.to is earlier than dateRange.from"])
    if end - start > MAX_RANGE:
        raise ApiFailure(
            400, 21405, _BAD, [f"dateRange exceeds the maximum of {MAX_RANGE.days} days counted in UTC ({end - start})"]
        )
    rt.counters.date_ranges.append(("export" if export else "query", start, end))
    # The spec: for a recent period the HWM is the mark itself; for an older one it matches the query's bound.
    mark = None if global_mark is None else min(global_mark, end)
    if restrict and global_mark is not None:
        end = min(end, global_mark)
    return _Filters(subject, date_type, start, end, mark, filters, global_mark)


def _date_of(inv: StoredInvoice, date_type: str) -> dt.datetime:
    if date_type == "PermanentStorage":
        return inv.permanent_storage_date
    if date_type == "Invoicing":
        return inv.invoicing_date
    issue = inv.issue_date or inv.invoicing_date.date()
    return dt.datetime(issue.year, issue.month, issue.day, tzinfo=WARSAW).astimezone(dt.UTC)


def _in_range(inv: StoredInvoice, f: _Filters) -> bool:
    if f.date_type == "Issue":
        # An issue date is a calendar day: it matches when that day (in Warsaw) meets [from, to].
        day = inv.issue_date or inv.invoicing_date.date()
        return f.start.astimezone(WARSAW).date() <= day <= f.end.astimezone(WARSAW).date()
    moment = _date_of(inv, f.date_type)
    return f.start <= moment <= f.end


def _matches(rt: Runtime, context: ContextKey, inv: StoredInvoice, f: _Filters) -> bool:  # noqa: C901, PLR0911, PLR0912
    body = f.body
    if f.subject_type == "Subject1":
        if context[0] != "Nip" or inv.seller_nip != context[1]:
            return False
    elif f.subject_type == "Subject2":
        if inv.buyer_identifier is None or inv.buyer_identifier[1] != context[1]:
            return False
    else:  # Subject3 / SubjectAuthorized: the store records no third or authorised subjects
        return False
    if not _in_range(inv, f):
        return False
    if (number := body.get("ksefNumber")) is not None and inv.ksef_number != number:
        return False
    if (number := body.get("invoiceNumber")) is not None and inv.invoice_number != number:
        return False
    if (nip := body.get("sellerNip")) is not None and inv.seller_nip != nip:
        return False
    if (mode := body.get("invoicingMode")) is not None and inv.invoicing_mode != mode:
        return False
    if (attachment := body.get("hasAttachment")) is not None and inv.has_attachment != attachment:
        return False
    if (form := body.get("formType")) is not None and inv.form.get("value") != form:
        return False
    buyer = body.get("buyerIdentifier")
    if isinstance(buyer, dict):
        kind, value = inv.buyer_identifier or ("None", "")
        if buyer.get("type") != kind or (buyer.get("value") is not None and buyer.get("value") != value):
            return False
    needs_meta = any(body.get(k) is not None for k in ("amount", "currencyCodes", "invoiceTypes", "isSelfInvoicing"))
    if needs_meta:
        meta = invoice_metadata(rt, inv)
        if (codes := body.get("currencyCodes")) is not None and meta["currency"] not in codes:
            return False
        if (types := body.get("invoiceTypes")) is not None and meta["invoiceType"] not in types:
            return False
        if (selfinv := body.get("isSelfInvoicing")) is not None and meta["isSelfInvoicing"] != selfinv:
            return False
        amount = body.get("amount")
        if isinstance(amount, dict):
            field_name = {"Brutto": "grossAmount", "Netto": "netAmount", "Vat": "vatAmount"}.get(
                str(amount.get("type"))
            )
            if field_name is None:
                raise ApiFailure(400, 21405, _BAD, ["amount.type must be Brutto, Netto or Vat"])
            value_ = meta[field_name]
            low, high = amount.get("from"), amount.get("to")
            if (low is not None and value_ < low) or (high is not None and value_ > high):
                return False
    return True


def _select(rt: Runtime, context: ContextKey, f: _Filters, *, descending: bool = False) -> list[StoredInvoice]:
    now = rt.state.clock.now_dt()
    found = [
        inv for inv in rt.state.invoices.values() if inv.permanent_storage_date <= now and _matches(rt, context, inv, f)
    ]
    found.sort(key=lambda inv: (_date_of(inv, f.date_type), inv.ksef_number), reverse=descending)
    return found


def _context(principal: Principal | None) -> ContextKey:
    assert principal is not None
    return principal.operation.context


# -- handlers --------------------------------------------------------------------------------------------------------


def _int_param(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiFailure(400, 21405, _BAD, [f"'{name}' must be an integer"]) from None
    if value < low or (high is not None and value > high):
        raise ApiFailure(400, 21405, _BAD, [f"'{name}' must be between {low} and {high}"])
    return value


async def query_metadata(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /invoices/query/metadata``."""
    context = _context(principal)
    order = request.query.get("sortOrder", "Asc")
    if order not in ("Asc", "Desc"):
        raise ApiFailure(400, 21405, _BAD, ["'sortOrder' must be Asc or Desc"])
    offset = _int_param(request, "pageOffset", 0, 0, None)
    size = _int_param(request, "pageSize", 10, 10, 250)
    f = _parse_filters(rt, body, export=False)
    cap = _store(rt).settings.query_cap
    found = _select(rt, context, f, descending=order == "Desc")
    window = found[:cap]
    first, end = offset * size, (offset + 1) * size
    page = window[first:end]
    answer: dict[str, Any] = {
        "hasMore": len(found) > end,
        "isTruncated": len(found) > cap and end >= cap,
        "permanentStorageHwmDate": iso(f.hwm) if f.hwm is not None else None,
        "invoices": [invoice_metadata(rt, inv) for inv in page],
    }
    return web.json_response(answer)


async def get_invoice(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:  # noqa: ARG001
    """``GET /invoices/ksef/{ksefNumber}``: the XML with ``x-ms-meta-hash``; 21164 unknown, 21165 not stored yet."""
    context = _context(principal)
    number = str(request.match_info["ksefNumber"])
    inv = rt.state.invoices.get(number)
    now = rt.state.clock.now_dt()
    allowed = inv is not None and (
        inv.context == context
        or (context[0] == "Nip" and inv.seller_nip == context[1])
        or (inv.buyer_identifier is not None and inv.buyer_identifier[1] == context[1])
    )
    if inv is None or not allowed or now < inv.acquisition_date:
        raise ApiFailure(
            400,
            21164,
            "Faktura o podanym identyfikatorze nie istnieje.",
            [f"Faktura o numerze KSeF {number} nie została znaleziona."],
        )
    if now < inv.permanent_storage_date:
        raise ApiFailure(
            400,
            21165,
            "Faktura o podanym numerze KSeF nie jest jeszcze dostępna.",
            [
                (
                    f"Faktura o numerze KSeF {number} została przetworzona, ale nie jest jeszcze dostępna do pobrania. "
                    "Spróbuj ponownie później."
                )
            ],
        )
    return web.Response(
        body=inv.content,
        content_type="application/xml",
        charset="utf-8",
        headers={"x-ms-meta-hash": inv.invoice_hash},
    )
