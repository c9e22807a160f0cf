"""Online-session endpoints: open, send an invoice, close; session status and the session and invoice listings."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Any

from aiohttp import web

from ksef_async.core.crypto import (
    decrypt_cbc,
    sha256_b64,
)
from ksef_async.errors import CryptoError
from ksef_async.testing.simulator.features import (
    requested_features,
)
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import b64_field, opt, paged, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.session_core import (
    decrypt_session_key,
    find_session,
    invoice_counts,
    invoice_json,
    no_session_detail,
    open_session,
    parse_form_code,
    register_invoice,
    session_status,
    visible,
)
from ksef_async.testing.simulator.state import InvoiceEntry, Session, SessionKind, iso
from ksef_async.testing.simulator.upo_documents import session_upo_pages
from ksef_async.xml.validation import check_invoice

__all__ = [
    "close_online",
    "get_invoice_status",
    "get_session",
    "list_failed_invoices",
    "list_invoices",
    "list_sessions",
    "open_online",
    "send_invoice",
    "session_unavailable",
]


async def open_online(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /sessions/online`` (``X-KSeF-Feature`` values are kept; a ``session-down`` fault may strike here)."""
    assert principal is not None
    form = parse_form_code(body, batch=False)
    session = open_session(rt, principal, SessionKind.ONLINE, form_code=form, key=decrypt_session_key(rt, body))
    session.features = requested_features(request)
    session.unavailable = rt.faults.fires("session-down")
    valid_until = dt.datetime.fromtimestamp(session.valid_until, dt.UTC)
    return web.json_response({"referenceNumber": session.reference_number, "validUntil": iso(valid_until)}, status=201)


async def send_invoice(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /sessions/online/{referenceNumber}/invoices``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"], SessionKind.ONLINE)
    code, _ = session_status(rt, session)
    if code != 100:  # noqa: PLR2004
        raise ApiFailure(400, 21180, "Status sesji nie pozwala na wykonanie operacji.", [f"session status {code}"])
    if session.unavailable or rt.faults.fires("session-unavailable"):
        raise session_unavailable(session.reference_number)
    if len(session.invoices) >= rt.max_invoices(session.context, "onlineSession"):
        raise ApiFailure(400, 21155, "Przekroczono dozwoloną liczbę faktur w sesji.")
    invoice_hash = req(body, "invoiceHash", str)
    invoice_size = req(body, "invoiceSize", int)
    encrypted_hash = req(body, "encryptedInvoiceHash", str)
    encrypted_size = req(body, "encryptedInvoiceSize", int)
    ciphertext = b64_field(body, "encryptedInvoiceContent")
    offline = opt(body, "offlineMode", bool, default=False)
    if len(ciphertext) != encrypted_size:
        raise ApiFailure(400, 21402, "Nieprawidłowy rozmiar pliku.", ["encryptedInvoiceSize differs from the content"])
    if sha256_b64(ciphertext) != encrypted_hash:
        raise ApiFailure(400, 21403, "Nieprawidłowy skrót pliku.", ["encryptedInvoiceHash differs from the content"])
    try:
        plaintext = decrypt_cbc(session.key, ciphertext)
    except CryptoError:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", ["content cannot be decrypted"]) from None
    if len(plaintext) != invoice_size:
        raise ApiFailure(400, 21402, "Nieprawidłowy rozmiar pliku.", ["invoiceSize differs from the decrypted invoice"])
    if sha256_b64(plaintext) != invoice_hash:
        raise ApiFailure(400, 21403, "Nieprawidłowy skrót pliku.", ["invoiceHash differs from the decrypted invoice"])
    corrected = _corrected_original(rt, session, opt(body, "hashOfCorrectedInvoice", str), offline=offline)
    reference = rt.reference("EE")
    received = rt.state.clock.now()
    result = await asyncio.get_running_loop().run_in_executor(None, check_invoice, plaintext, reference)
    entry = register_invoice(
        rt,
        session,
        result,
        plaintext,
        received=received,
        reference=reference,
        file_name=None,
        offline=offline,
        invoicing_time=received,
        corrects=corrected,
    )
    entry.corrects = corrected
    return web.json_response({"referenceNumber": reference}, status=202)


def session_unavailable(reference_number: str) -> ApiFailure:
    """400 21184 "Sesja tymczasowo niedostępna" for ``reference_number``, worded as the spec's error table."""
    detail = (
        f"Trwają prace serwisowe i sesja {reference_number} jest tymczasowo niedostępna. Spróbuj ponownie później "
        "lub otwórz nową sesję, aby wysłać kolejne faktury."
    )
    return ApiFailure(400, 21184, "Sesja tymczasowo niedostępna.", [detail])


# Technical rejections a correction may fix (official docs ``offline/korekta-techniczna.md``): not permission scope
# (410), not accepted ones (200).
_CORRECTABLE = frozenset({415, 430, 435, 440, 450})


def _corrected_original(
    rt: Runtime, session: Session, corrected_hash: str | None, *, offline: bool
) -> InvoiceEntry | None:
    """The rejected offline invoice a technical correction refers to (21166 / 21167 when it cannot be corrected)."""
    if corrected_hash is None:
        return None
    unavailable = "Korekta techniczna niedostępna."
    if not offline:
        raise ApiFailure(400, 21166, unavailable, ["a technical correction is sent with offlineMode true"])
    originals = [
        entry
        for other in rt.state.sessions.values()
        if other.context == session.context  # the original may have come in a batch session too
        for entry in other.invoices
        if entry.invoice_hash == corrected_hash and entry.corrects is None
    ]
    if not originals:
        raise ApiFailure(400, 21166, unavailable, ["no invoice with hashOfCorrectedInvoice was sent in this context"])
    original = originals[-1]
    code, _, final = visible(rt, original, rt.state.clock.now())
    if not final or code not in _CORRECTABLE or original.invoicing_mode != "Offline":
        detail = f"the original's status is {code} ({original.invoicing_mode})"
        raise ApiFailure(400, 21167, "Status faktury nie pozwala na korektę techniczną.", [detail])
    for other in rt.state.sessions.values():
        for entry in other.invoices:
            if entry.corrects is original and entry.final_code == 200:  # noqa: PLR2004
                raise ApiFailure(400, 21166, unavailable, [f"already corrected by {entry.reference_number}"])
    return original


async def close_online(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``POST /sessions/online/{referenceNumber}/close``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"], SessionKind.ONLINE)
    code, _ = session_status(rt, session)
    if code != 100:  # noqa: PLR2004
        raise ApiFailure(400, 21180, "Status sesji nie pozwala na wykonanie operacji.", [f"session status {code}"])
    session.closed = rt.state.clock.now()
    session.updated = session.closed
    return web.Response(status=204)


# -- handlers: status and listings -------------------------------------------------------------------------------


async def get_session(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /sessions/{referenceNumber}``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
    code, description = session_status(rt, session)
    total, ok, failed = invoice_counts(rt, session)
    upo = None
    if code == 200:  # noqa: PLR2004
        pages = await asyncio.get_running_loop().run_in_executor(None, session_upo_pages, rt, session)
        expires = rt.state.clock.now() + rt.config.download_url_lifetime
        upo = {
            "pages": [
                {
                    "referenceNumber": ref,
                    "downloadUrl": rt.sign_url(f"/storage/upo/{session.reference_number}/{ref}", "r", expires),
                    "downloadUrlExpirationDate": iso(dt.datetime.fromtimestamp(int(expires), dt.UTC)),
                }
                for ref, _ in pages
            ]
        }
    updated = max(session.updated, session.closed or 0.0)
    result = {
        "status": {"code": code, "description": description, "details": session.final_details},
        "dateCreated": iso(dt.datetime.fromtimestamp(session.created, dt.UTC)),
        "dateUpdated": iso(dt.datetime.fromtimestamp(updated, dt.UTC)),
        "validUntil": iso(dt.datetime.fromtimestamp(session.valid_until, dt.UTC)),
        "upo": upo,
        "invoiceCount": total,
        "successfulInvoiceCount": ok,
        "failedInvoiceCount": failed,
    }
    return web.json_response(result)


async def list_invoices(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
    page, token = paged(rt, request, f"inv:{session.reference_number}", session.invoices, low=10, high=1000)
    return web.json_response({"continuationToken": token, "invoices": [invoice_json(rt, session, e) for e in page]})


async def list_failed_invoices(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices/failed``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
    now = rt.state.clock.now()
    failed = [e for e in session.invoices if (v := visible(rt, e, now))[2] and v[0] != 200]  # noqa: PLR2004
    page, token = paged(rt, request, f"failed:{session.reference_number}", failed, low=10, high=1000)
    return web.json_response({"continuationToken": token, "invoices": [invoice_json(rt, session, e) for e in page]})


async def get_invoice_status(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}``: its 400 table lists only 21405."""
    ref = request.match_info["referenceNumber"]
    session = find_session(rt, principal, ref, missing=ApiFailure(400, 21405, details=[no_session_detail(ref)]))
    entry = session.by_reference.get(request.match_info["invoiceReferenceNumber"])
    if entry is None:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", ["no such invoice in the session"])
    return web.json_response(invoice_json(rt, session, entry))


def _parse_filter_date(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"{name} is not a date-time"]) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_COMMON_STATUS = {100: "InProgress", 150: "InProgress", 170: "InProgress", 200: "Succeeded", 440: "Cancelled"}


async def list_sessions(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /sessions`` with ``sessionType`` (required), date, reference and status filters."""
    assert principal is not None
    kind_text = request.query.get("sessionType")
    if kind_text not in ("Online", "Batch"):
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", ["sessionType must be Online or Batch"])
    kind = SessionKind(kind_text)
    statuses = set(request.query.getall("statuses", []))
    ref = request.query.get("referenceNumber")
    bounds = {name: _parse_filter_date(request, name) for name in (
        "dateCreatedFrom", "dateCreatedTo", "dateClosedFrom", "dateClosedTo", "dateModifiedFrom", "dateModifiedTo"
    )}  # fmt: skip
    items = []
    for session in rt.state.sessions.values():
        if session.kind is not kind or session.context != principal.operation.context:
            continue
        if ref and session.reference_number != ref:
            continue
        code, description = session_status(rt, session)
        if statuses and _COMMON_STATUS.get(code, "Failed") not in statuses:
            continue
        created = dt.datetime.fromtimestamp(session.created, dt.UTC)
        closed = dt.datetime.fromtimestamp(session.closed, dt.UTC) if session.closed is not None else None
        updated = dt.datetime.fromtimestamp(max(session.updated, session.closed or 0.0), dt.UTC)
        if not _within(created, bounds["dateCreatedFrom"], bounds["dateCreatedTo"]):
            continue
        if (bounds["dateClosedFrom"] or bounds["dateClosedTo"]) and (
            closed is None or not _within(closed, bounds["dateClosedFrom"], bounds["dateClosedTo"])
        ):
            continue
        if not _within(updated, bounds["dateModifiedFrom"], bounds["dateModifiedTo"]):
            continue
        total, ok, failed = invoice_counts(rt, session)
        items.append(
            {
                "referenceNumber": session.reference_number,
                "status": {"code": code, "description": description},
                "dateCreated": iso(created),
                "dateUpdated": iso(updated),
                "validUntil": iso(dt.datetime.fromtimestamp(session.valid_until, dt.UTC)),
                "totalInvoiceCount": total,
                "successfulInvoiceCount": ok,
                "failedInvoiceCount": failed,
            }
        )
    scope = hashlib.sha256(request.query_string.encode()).hexdigest()[:16]
    page, token = paged(rt, request, f"sessions:{scope}", items, low=10, high=1000)
    return web.json_response({"continuationToken": token, "sessions": page})


def _within(value: dt.datetime, low: dt.datetime | None, high: dt.datetime | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)
