"""The simulator's invoice retrieval: single download, metadata queries, exports with encrypted parts, the HWM.

Rules this module implements (spec ``/invoices/*``, official docs ``pobieranie-faktur/*.md``), and the choices where
the spec leaves room:

* An invoice is *stored* once ``permanent_storage_date <= now``. Only stored invoices appear in metadata queries and
  exports (whatever the ``dateType``), because the record we serve carries a ``permanentStorageDate`` and KSeF
  cannot report one it does not have yet. ``GET /invoices/ksef/{n}`` answers 21165 ("processed, not yet
  available") for an invoice that has its KSeF number but is not stored yet, 21164 for an unknown number.
* High Water Mark: ``min(now, earliest permanent-storage date of every invoice not yet stored)``, rounded down
  to ``hwm_interval`` (the real HWM is a rolling mark updated from time to time; the rounding keeps it constant
  across the pages of one query). Every invoice inserted later gets a permanent-storage date after the moment it
  is inserted, so data below the HWM never changes.
* Date ranges: ``from`` and ``to`` are inclusive; a date-time without ``Z`` or an explicit offset is 400 21405
  (API 2.9.0); ``to`` defaults to now; ``to - from`` over 100 days (counted in UTC) is 400 21405;
  ``restrictToPermanentStorageHwmDate`` (PermanentStorage only) clamps ``to`` to the HWM, and ``from`` above
  the HWM is 400 21183 for a query and status 420 for an export.
* Queries: sorted by the date of ``dateType`` (then by KSeF number); at most ``query_cap`` (10,000) records per
  filter set: the page reaching the cap with more records matching has ``isTruncated`` true.
* Exports: at most ``max_concurrent_exports`` (10) in progress per context (21182); status 100 for
  ``export_delay`` seconds, then 200 with the package, or 415 when the wrapped key cannot be decrypted, or 420.
  Invoices go in ascending date order until ``max_package_invoices`` (10,000) or ``max_package_bytes`` (1 GB,
  counted on the compressed archive) would be exceeded; ``_metadata.json`` is the first member and does not
  count. The archive (Zip or TarGz) is cut binary-wise into parts of at most ``max_part_size`` plaintext bytes,
  each encrypted separately with the requester's key and IV, spooled to disk (never whole in memory), and served
  by pre-signed ``GET /storage/exports/{ref}/{n}`` with ``x-ms-meta-hash`` = SHA-256 of the encrypted part.

`seed_invoices` inserts received invoices directly (no session), for tests that need thousands of them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import tarfile
import zipfile
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from aiohttp import web
from lxml import etree

from ksef_async.core.crypto import SessionKey, b64, sha256_b64
from ksef_async.core.identifiers import generate_nip
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.sessions import decrypt_session_key, opt, req, storage_error
from ksef_async.testing.simulator.state import ContextKey, StoredInvoice, iso
from ksef_async.xml.auth_request import safe_xml_parser

__all__ = [
    "HANDLERS",
    "ExportJob",
    "RetrievalSettings",
    "add_storage_routes",
    "export_status",
    "get_invoice",
    "hwm",
    "invoice_metadata",
    "query_metadata",
    "seed_invoices",
    "settings",
    "start_export",
]

WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")
_DATE_TYPES = ("Issue", "Invoicing", "PermanentStorage")
_SUBJECT_TYPES = ("Subject1", "Subject2", "Subject3", "SubjectAuthorized")
_BAD = "Błąd walidacji danych wejściowych."
_CHUNK = 1 << 20


@dataclass
class RetrievalSettings:
    """Retrieval knobs of one simulator (``settings(sim)``); tests shrink them to reach the limits quickly."""

    query_cap: int = 10_000
    """Records per filter set before ``isTruncated``."""
    max_package_invoices: int = 10_000
    max_package_bytes: int = 1_000_000_000
    """Compressed package size limit (``POST /invoices/exports`` says 1GB; read in SI units)."""
    max_part_size: int = 50_000_000
    """Plaintext bytes per export part (the spec says 50 MB)."""
    max_concurrent_exports: int = 10
    export_delay: float = 0.2
    """Seconds (simulated) an export stays at status 100."""
    hwm_interval: float = 1.0
    """The HWM is rounded down to a multiple of this many seconds."""
    package_lifetime: float = 7 * 24 * 3600.0
    zip_level: int = 6


@dataclass(eq=False)
class ExportJob:
    """One ``POST /invoices/exports`` and, once built, its package."""

    reference_number: str
    context: ContextKey
    created: float
    ready_at: float
    key: SessionKey | None = field(repr=False)
    compression: str
    only_metadata: bool
    date_type: str
    selection: list[StoredInvoice] = field(default_factory=list, repr=False)
    more_after: bool = False
    hwm: dt.datetime | None = None
    failure: tuple[int, str, list[str] | None] | None = None
    package: dict[str, Any] | None = None
    part_paths: dict[int, tuple[Path, str]] = field(default_factory=dict, repr=False)
    """Ordinal -> (spooled encrypted part, its Base64 SHA-256)."""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass
class _Store:
    settings: RetrievalSettings = field(default_factory=RetrievalSettings)
    exports: dict[str, ExportJob] = field(default_factory=dict)
    metadata: WeakKeyDictionary[StoredInvoice, dict[str, Any]] = field(default_factory=WeakKeyDictionary)


_STORES: WeakKeyDictionary[Runtime, _Store] = WeakKeyDictionary()


class _HasRuntime(Protocol):
    @property
    def runtime(self) -> Runtime: ...


def _runtime(sim: Runtime | _HasRuntime) -> Runtime:
    return sim if isinstance(sim, Runtime) else sim.runtime


def _store(rt: Runtime) -> _Store:
    store = _STORES.get(rt)
    if store is None:
        store = _STORES[rt] = _Store()
    return store


def settings(sim: Runtime | _HasRuntime) -> RetrievalSettings:
    """The retrieval settings of a simulator (a started `KsefSimulator` or its `Runtime`); mutable."""
    return _store(_runtime(sim)).settings


# -- the High Water Mark ---------------------------------------------------------------------------------------------


def hwm(rt: Runtime) -> dt.datetime:
    """The permanent-storage High Water Mark now (see the module docstring)."""
    now = rt.state.clock.now_dt()
    pending = [inv.permanent_storage_date for inv in rt.state.invoices.values() if inv.permanent_storage_date > now]
    mark = min([now, *pending])
    step = _store(rt).settings.hwm_interval
    if step > 0:
        stamp = mark.timestamp()
        mark = dt.datetime.fromtimestamp(stamp - stamp % step, dt.UTC)
    return mark


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


def _in_progress(rt: Runtime, context: ContextKey) -> int:
    now = rt.state.clock.now()
    return sum(
        1
        for job in _store(rt).exports.values()
        if job.context == context and ((job.package is None and job.failure is None) or now < job.ready_at)
    )


async def start_export(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:  # noqa: ARG001
    """``POST /invoices/exports``: 201 ``{referenceNumber}``; the package is built in the background."""
    context = _context(principal)
    store = _store(rt)
    filters = req(body, "filters", dict)
    compression = opt(body, "compressionType", str, default="Zip")
    if compression not in ("Zip", "TarGz"):
        raise ApiFailure(400, 21405, _BAD, ["compressionType must be Zip or TarGz"])
    only_metadata = opt(body, "onlyMetadata", bool, default=False)
    f = _parse_filters(rt, filters, export=True)
    key = decrypt_session_key(rt, body)
    if _in_progress(rt, context) >= store.settings.max_concurrent_exports:
        limit = store.settings.max_concurrent_exports
        raise ApiFailure(
            400,
            21182,
            "Osiągnięto limit trwających eksportów.",
            [
                (
                    f"Dla uwierzytelnionego podmiotu w bieżącym kontekście osiągnięto maksymalny limit {limit} "
                    "równoczesnych eksportów faktur. Spróbuj ponownie później."
                )
            ],
        )
    now = rt.state.clock.now()
    job = ExportJob(
        reference_number=rt.reference("EH"),
        context=context,
        created=now,
        ready_at=now + store.settings.export_delay,
        key=key,
        compression=compression,
        only_metadata=only_metadata,
        date_type=f.date_type,
        hwm=f.hwm,
    )
    restrict = bool((filters.get("dateRange") or {}).get("restrictToPermanentStorageHwmDate"))
    if key is None:
        job.failure = (415, "Błąd odszyfrowania dostarczonego klucza", None)
    elif restrict and f.global_hwm is not None and f.start > f.global_hwm:
        job.failure = (
            420,
            "Zakres filtrowania wykracza poza dostępny zakres danych",
            [
                (
                    "Parametr dateRange.from jest późniejszy niż PermanentStorageHwmDate przy włączonym "
                    "restrictToPermanentStorageHwmDate."
                )
            ],
        )
    else:
        # The selection is fixed now (as KSeF snapshots the query); the package is cut by the limits when built.
        job.selection = _select(rt, context, f)
    store.exports[job.reference_number] = job
    if job.failure is None:
        task = asyncio.get_running_loop().create_task(_build(rt, job))
        job.task = task
        rt.background.add(task)
        task.add_done_callback(rt.background.discard)
    return web.json_response({"referenceNumber": job.reference_number}, status=201)


def _export_json(rt: Runtime, job: ExportJob) -> dict[str, Any]:
    now = rt.state.clock.now()
    if now < job.ready_at or (job.failure is None and job.package is None):
        return {"status": {"code": 100, "description": "Eksport faktur w toku"}}
    completed = iso(dt.datetime.fromtimestamp(job.ready_at, dt.UTC))
    if job.failure is not None:
        code, description, details = job.failure
        status: dict[str, Any] = {"code": code, "description": description}
        if details:
            status["details"] = details
        return {"status": status, "completedDate": completed}
    expires = job.ready_at + _store(rt).settings.package_lifetime
    if now >= expires:
        return {
            "status": {"code": 210, "description": "Eksport faktur wygasł i nie jest już dostępny do pobrania"},
            "completedDate": completed,
        }
    assert job.package is not None
    package = dict(job.package)
    url_expiry = min(expires, now + rt.config.download_url_lifetime)
    expiry_text = iso(dt.datetime.fromtimestamp(int(url_expiry), dt.UTC))
    package["parts"] = [
        part
        | {
            "url": rt.sign_url(f"/storage/exports/{job.reference_number}/{part['ordinalNumber']}", "r", url_expiry),
            "expirationDate": expiry_text,
        }
        for part in package["parts"]
    ]
    return {
        "status": {"code": 200, "description": "Eksport faktur zakończony sukcesem"},
        "completedDate": completed,
        "packageExpirationDate": iso(dt.datetime.fromtimestamp(expires, dt.UTC)),
        "package": package,
    }


async def export_status(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:  # noqa: ARG001
    """``GET /invoices/exports/{referenceNumber}``."""
    context = _context(principal)
    ref = request.match_info["referenceNumber"]
    job = _store(rt).exports.get(ref)
    if job is None or job.context != context:
        raise ApiFailure(400, 21175, "Wynik zapytania o podanym identyfikatorze nie istnieje.")
    return web.json_response(_export_json(rt, job))


# -- package building (worker thread) --------------------------------------------------------------------------------


class _PartWriter(io.RawIOBase):
    """A write-only stream that cuts what it receives into parts of ``limit`` bytes, each encrypted separately."""

    def __init__(self, key: SessionKey, directory: Path, stem: str, *, limit: int, name: str, suffix: str) -> None:
        super().__init__()
        self.export_name = name
        self._suffix = suffix
        self._key = key
        self._dir = directory
        self._stem = stem
        self._limit = limit
        self.parts: list[dict[str, Any]] = []
        self.paths: dict[int, tuple[Path, str]] = {}
        self.total = 0
        self._fh: Any = None
        self._open_part()

    def _open_part(self) -> None:
        ordinal = len(self.parts) + 1
        self._ordinal = ordinal
        self._path = self._dir / f"{self._stem}.{ordinal:03d}.aes"
        self._fh = self._path.open("wb")
        self._enc = self._key.encryptor()
        self._plain_hash = hashlib.sha256()
        self._cipher_hash = hashlib.sha256()
        self._plain_size = 0
        self._cipher_size = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._fh.write(data)
            self._cipher_hash.update(data)
            self._cipher_size += len(data)

    def _close_part(self) -> None:
        self._emit(self._enc.finalize())
        self._fh.close()
        encrypted_hash = b64(self._cipher_hash.digest())
        self.paths[self._ordinal] = (self._path, encrypted_hash)
        self.parts.append(
            {
                "ordinalNumber": self._ordinal,
                "partName": f"{self.export_name}-{self._ordinal:03d}.{self._suffix}.aes",
                "method": "GET",
                "partSize": self._plain_size,
                "partHash": b64(self._plain_hash.digest()),
                "encryptedPartSize": self._cipher_size,
                "encryptedPartHash": encrypted_hash,
            }
        )

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = len(view)
        while len(view):
            if self._plain_size >= self._limit:
                self._close_part()
                self._open_part()
            take = view[: self._limit - self._plain_size]
            self._plain_hash.update(take)
            self._plain_size += len(take)
            self.total += len(take)
            self._emit(self._enc.update(take))
            view = view[len(take) :]
        return written

    def finish(self) -> None:
        self._close_part()


def _write_package(rt: Runtime, job: ExportJob, cfg: RetrievalSettings) -> None:  # noqa: C901, PLR0912
    assert job.key is not None
    writer = _PartWriter(
        job.key,
        rt.spool_dir,
        f"export-{job.reference_number}",
        limit=cfg.max_part_size,
        name=job.reference_number,
        suffix="zip" if job.compression == "Zip" else "tar.gz",
    )
    chosen: list[StoredInvoice] = []
    selection = job.selection
    if job.only_metadata:
        chosen = selection[: cfg.max_package_invoices]
    else:
        # Pre-compute which invoices fit so _metadata.json (the first member) lists exactly the package's invoices.
        # The compressed size is estimated by compressing each invoice alone at the same level (zlib streams per
        # member, as Zip does); TarGz compresses across members, so the estimate is an upper bound there.
        import zlib  # noqa: PLC0415

        head = selection[: cfg.max_package_invoices]
        # Compression never makes a member much larger than its plaintext, so when the plaintext fits, all of it does.
        generous = sum(inv.size + 200 for inv in head) <= cfg.max_package_bytes
        used = 0
        for inv in selection:
            if len(chosen) >= cfg.max_package_invoices:
                break
            if generous:
                chosen.append(inv)
                continue
            cost = len(zlib.compress(inv.content, cfg.zip_level)) + 100 + len(inv.ksef_number) * 2
            if chosen and used + cost > cfg.max_package_bytes:
                break
            used += cost
            chosen.append(inv)
    metadata = json.dumps(
        {"invoices": [invoice_metadata(rt, inv) for inv in chosen]}, ensure_ascii=False, separators=(",", ":")
    ).encode()
    if job.compression == "Zip":
        with zipfile.ZipFile(writer, "w", zipfile.ZIP_DEFLATED, compresslevel=cfg.zip_level) as archive:
            archive.writestr("_metadata.json", metadata)
            if not job.only_metadata:
                for inv in chosen:
                    archive.writestr(f"{inv.ksef_number}.xml", inv.content)
    else:
        with tarfile.open(fileobj=writer, mode="w|gz") as archive:
            _tar_add(archive, "_metadata.json", metadata, job.created)
            if not job.only_metadata:
                for inv in chosen:
                    _tar_add(archive, f"{inv.ksef_number}.xml", inv.content, job.created)
    writer.finish()
    truncated = len(chosen) < len(selection)
    package: dict[str, Any] = {
        "compressionType": job.compression,
        "invoiceCount": len(chosen),
        "size": writer.total,
        "parts": writer.parts,
        "isTruncated": truncated,
        "lastIssueDate": None,
        "lastInvoicingDate": None,
        "lastPermanentStorageDate": None,
        "permanentStorageHwmDate": iso(job.hwm) if job.hwm is not None else None,
    }
    if truncated and chosen:
        last = chosen[-1]
        if job.date_type == "PermanentStorage":
            package["lastPermanentStorageDate"] = iso(last.permanent_storage_date)
        elif job.date_type == "Invoicing":
            package["lastInvoicingDate"] = iso(last.invoicing_date)
        else:
            package["lastIssueDate"] = (last.issue_date or last.invoicing_date.date()).isoformat()
    job.part_paths = writer.paths
    job.package = package


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


async def _build(rt: Runtime, job: ExportJob) -> None:
    cfg = _store(rt).settings
    try:
        await asyncio.get_running_loop().run_in_executor(None, _write_package, rt, job, cfg)
    except Exception as exc:  # noqa: BLE001 - any failure is the export's status 500, as on KSeF
        job.failure = (500, f"Nieznany błąd ({type(exc).__name__})", None)
    job.selection = []


async def download_part(rt: Runtime, request: web.Request) -> web.StreamResponse:
    """Pre-signed ``GET /storage/exports/{ref}/{n}``: no token, not rate-limited, ``x-ms-meta-hash``."""
    rt.counters.requests["storage"] += 1
    refusal = rt.check_url(request.path, request.query, "r")
    if refusal is not None:
        return storage_error(403, refusal)
    if "Authorization" in request.headers:
        return storage_error(
            400, "InvalidAuthenticationInfo: Authentication information is not given in the correct format."
        )
    job = _store(rt).exports.get(request.match_info["ref"])
    try:
        ordinal = int(request.match_info["part"])
    except ValueError:
        ordinal = -1
    if job is None or job.package is None or ordinal not in job.part_paths:
        return storage_error(404, "BlobNotFound: The specified blob does not exist.")
    path, digest = job.part_paths[ordinal]
    return web.FileResponse(
        path, chunk_size=_CHUNK, headers={"x-ms-meta-hash": digest, "Content-Type": "application/octet-stream"}
    )


def add_storage_routes(app: web.Application, rt: Runtime) -> None:
    """Register the export part download route on ``app``."""

    async def download(request: web.Request) -> web.StreamResponse:
        return await download_part(rt, request)

    app.router.add_get("/storage/exports/{ref}/{part}", download)


HANDLERS = {
    "post_invoices_query_metadata": query_metadata,
    "post_invoices_exports": start_export,
    "get_invoices_exports_by_reference_number": export_status,
    "get_invoices_ksef_by_ksef_number": get_invoice,
}
"""Operation id -> handler, merged into the app's handler table."""


# -- seeding ---------------------------------------------------------------------------------------------------------


def seed_invoices(
    sim: Runtime | _HasRuntime,
    nip: str,
    count: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    role: str = "buyer",
    sellers: Sequence[str] | None = None,
    size_kb: float = 3.0,
    seed: int = 0,
) -> list[str]:
    """Insert ``count`` accepted invoices with ``invoicingDate`` spread evenly over ``[start, end]``, no session.

    Each gets ``acquisitionDate`` one second after ``invoicingDate`` and ``permanentStorageDate`` =
    ``invoicingDate`` + the simulator's ``storage_delay``. Keep the HWM promise (data below it never changes):
    seed history before the first query, and later arrivals with ``start`` at or after the simulated now.

    Args:
        sim: A started `KsefSimulator` (or its `Runtime`).
        nip: The context's NIP: the buyer (``role="buyer"``, what ``Subject2`` finds) or the seller (``Subject1``).
        count: How many invoices.
        start: Invoicing date of the first (aware).
        end: Invoicing date of the last (aware).
        role: ``"buyer"`` or ``"seller"``.
        sellers: Seller NIPs cycled over (buyer role; default five generated NIPs).
        size_kb: Approximate XML size (InvoiceFactory, at least 3).
        seed: Makes contents and numbers reproducible; use different seeds for separate batches.

    Returns:
        The KSeF numbers, in invoicing-date order.
    """
    rt = _runtime(sim)
    if count <= 0:
        return []
    if start.tzinfo is None or end.tzinfo is None or end < start:
        msg = "seed_invoices: start and end must be aware datetimes with start <= end"
        raise ValueError(msg)
    import random  # noqa: PLC0415

    rng = random.Random(f"seed-invoices:{seed}")  # noqa: S311 - test data
    if role == "buyer":
        seller_nips = list(sellers or [generate_nip(rng) for _ in range(5)])
    elif role == "seller":
        seller_nips = [nip]
    else:
        msg = f"seed_invoices: role must be 'buyer' or 'seller', got {role!r}"
        raise ValueError(msg)
    step = (end - start) / max(1, count - 1)
    # One factory per seller (building one costs ~0.1 s); each invoice is the seller's invoice ``index`` with its
    # dates moved to its invoicing day, so P_2 stays distinct and P_1 agrees with the metadata's issueDate.
    factories: dict[str, InvoiceFactory] = {}
    numbers: list[str] = []
    state = rt.state
    for index in range(count):
        invoicing = (start + step * index).astimezone(dt.UTC)
        seller = seller_nips[index % len(seller_nips)]
        day = invoicing.astimezone(WARSAW).date()
        factory = factories.get(seller)
        if factory is None:
            factory = InvoiceFactory(
                seller,
                buyer_nip=nip if role == "buyer" else None,
                seed=seed * 1_000_003 + len(factories),
                size_kb=size_kb,
                issue_date=day,
            )
            factories[seller] = factory
        _, content = factory.make(index)
        content = _redate(content, factory.issue_date, day)
        number = rt.ksef_number(seller, invoicing.date())
        buyer = _buyer_of(content) if role == "seller" else ("Nip", nip)
        stored = StoredInvoice(
            ksef_number=number,
            content=content,
            invoice_hash=sha256_b64(content),
            size=len(content),
            seller_nip=seller,
            buyer_identifier=buyer,
            invoice_number=factory.invoice_number(index),
            invoice_type="VAT",
            form={"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
            issue_date=day,
            invoicing_date=invoicing,
            acquisition_date=invoicing + dt.timedelta(seconds=1),
            permanent_storage_date=invoicing + dt.timedelta(seconds=state.storage_delay),
            invoicing_mode="Online",
            has_attachment=False,
            session_reference="seeded",
            context=("Nip", seller),
        )
        state.invoices[number] = stored
        state.duplicates[(seller, "VAT", stored.invoice_number)] = ("seeded", number)
        numbers.append(number)
    return numbers


def _redate(content: bytes, old: dt.date, new: dt.date) -> bytes:
    if old == new:
        return content
    before, after = old.isoformat().encode(), new.isoformat().encode()
    # P_1, DataWytworzeniaFa and DataZaplaty carry the issue day; P_6 (sale date) may stay earlier or later.
    for tag in (b"<P_1>", b"<DataWytworzeniaFa>", b"<DataZaplaty>"):
        content = content.replace(tag + before, tag + after, 1)
    return content


def _buyer_of(content: bytes) -> tuple[str, str] | None:
    root = etree.fromstring(content, safe_xml_parser())
    value = _text(root, "{*}Podmiot2/{*}DaneIdentyfikacyjne/{*}NIP")
    return ("Nip", value) if value else None
