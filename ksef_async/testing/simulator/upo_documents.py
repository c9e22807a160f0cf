"""UPO documents: building them, the ``/sessions/.../upo`` endpoints and the pre-signed ``/storage/upo`` downloads."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web

from ksef_async.core.crypto import (
    sha256_b64,
)
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.session_core import find_session, no_session_detail, session_status, visible
from ksef_async.testing.simulator.state import InvoiceEntry, Session
from ksef_async.xml.auth_request import ContextIdentifier
from ksef_async.xml.upo import UpoDocument, build_session_upo_pages, build_upo

__all__ = [
    "download_upo",
    "get_invoice_upo",
    "get_invoice_upo_by_ksef",
    "get_session_upo",
    "session_upo_pages",
    "storage_error",
]


def _upo_options(rt: Runtime, session: Session) -> dict[str, Any]:
    op = rt.state.auth_operations[session.auth_reference]
    form = session.form_code
    return {
        "context": ContextIdentifier(session.context[0], session.context[1]),  # type: ignore[arg-type]
        "ksef_token_reference": op.token_reference,
        "auth_document_digest": None if op.token_reference else op.document_hash,
        "form_code": form["systemCode"],
        "logical_structure_name": f"Schemat_{form['systemCode'].replace(' ', '')}_v{form['schemaVersion']}.xsd",
        "environment_name": rt.config.environment_name,
    }


def _upo_document(rt: Runtime, entry: InvoiceEntry) -> UpoDocument:
    stored = rt.state.invoices[entry.ksef_number or ""]
    return UpoDocument(
        seller_nip=stored.seller_nip,
        ksef_number=stored.ksef_number,
        invoice_number=stored.invoice_number,
        issue_date=stored.issue_date or stored.invoicing_date.date(),
        sent_at=dt.datetime.fromtimestamp(entry.received, dt.UTC),
        ksef_number_assigned_at=stored.acquisition_date,
        document_hash=stored.invoice_hash,
        sending_mode="Offline" if stored.invoicing_mode == "Offline" else "Online",
    )


def session_upo_pages(rt: Runtime, session: Session) -> list[tuple[str, bytes]]:
    """The session UPO's pages ``(reference, XML)``, built once when first asked for."""
    if session.upo_pages is None:
        documents = [_upo_document(rt, e) for e in session.invoices if e.final_code == 200]  # noqa: PLR2004
        pages = build_session_upo_pages(
            session_reference_number=session.reference_number,
            documents=documents,
            page_size=rt.config.upo_page_size,
            **_upo_options(rt, session),
        )
        session.upo_pages = [(rt.reference("EU"), page) for page in pages]
    return session.upo_pages


def _invoice_upo(rt: Runtime, session: Session, entry: InvoiceEntry) -> bytes:
    return build_upo(
        session_reference_number=session.reference_number,
        documents=[_upo_document(rt, entry)],
        **_upo_options(rt, session),
    )


def _xml(data: bytes) -> web.Response:
    return web.Response(
        body=data, content_type="application/xml", charset="utf-8", headers={"x-ms-meta-hash": sha256_b64(data)}
    )


def _processed(rt: Runtime, session: Session) -> None:
    if session_status(rt, session)[0] != 200:  # noqa: PLR2004
        raise ApiFailure(400, 21178, "Nie znaleziono UPO dla podanych kryteriów.", ["the session has no UPO (yet)"])


async def get_session_upo(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /sessions/{referenceNumber}/upo/{upoReferenceNumber}``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
    _processed(rt, session)
    pages = await asyncio.get_running_loop().run_in_executor(None, session_upo_pages, rt, session)
    for ref, data in pages:
        if ref == request.match_info["upoReferenceNumber"]:
            return _xml(data)
    raise ApiFailure(400, 21178, "Nie znaleziono UPO dla podanych kryteriów.")


def _final_ok(rt: Runtime, entry: InvoiceEntry | None, missing: ApiFailure) -> InvoiceEntry:
    if entry is None or visible(rt, entry, rt.state.clock.now()) != (200, entry.final_description, True):
        raise missing
    return entry


async def get_invoice_upo(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}/upo``: its 400 table lists only 21405."""
    ref = request.match_info["referenceNumber"]
    invoice = request.match_info["invoiceReferenceNumber"]
    session = find_session(rt, principal, ref, missing=ApiFailure(400, 21405, details=[no_session_detail(ref)]))
    missing = ApiFailure(400, 21405, details=[f"UPO faktury o numerze referencyjnym {invoice} nie zostało znalezione."])
    entry = _final_ok(rt, session.by_reference.get(invoice), missing)
    return _xml(_invoice_upo(rt, session, entry))


async def get_invoice_upo_by_ksef(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices/ksef/{ksefNumber}/upo``: 21178 (its table has no 21173)."""
    ref = request.match_info["referenceNumber"]
    number = request.match_info["ksefNumber"]
    missing = ApiFailure(
        400,
        21178,
        "Nie znaleziono UPO dla podanych kryteriów.",
        [f"UPO o numerze KSeF {number} i numerze referencyjnym sesji {ref} nie zostało znalezione."],
    )
    session = find_session(rt, principal, ref, missing=missing)
    entry = next((e for e in session.invoices if e.ksef_number == number), None)
    entry = _final_ok(rt, entry, missing)
    return _xml(_invoice_upo(rt, session, entry))


async def download_upo(rt: Runtime, request: web.Request) -> web.Response:
    """Pre-signed ``GET /storage/upo/{session}/{upo}`` and ``/storage/upo/{session}/invoices/{invoice}``.

    No token and no rate limit; the signature and expiry are checked.
    """
    refusal = rt.check_url(request.path, request.query, "r")
    if refusal is not None:
        return storage_error(403, refusal)
    session = rt.state.sessions.get(request.match_info["session"])
    if session is None or session_status(rt, session)[0] != 200:  # noqa: PLR2004
        return storage_error(404, "BlobNotFound: The specified blob does not exist.")
    invoice = request.match_info.get("invoice")
    if invoice is not None:
        entry = session.by_reference.get(invoice)
        if entry is None or entry.final_code != 200:  # noqa: PLR2004
            return storage_error(404, "BlobNotFound: The specified blob does not exist.")
        return _xml(_invoice_upo(rt, session, entry))
    pages = await asyncio.get_running_loop().run_in_executor(None, session_upo_pages, rt, session)
    for ref, data in pages:
        if ref == request.match_info["upo"]:
            return _xml(data)
    return storage_error(404, "BlobNotFound: The specified blob does not exist.")


def storage_error(status: int, message: str) -> web.Response:
    """An Azure-Blob-style XML error (``<Error><Code/><Message/></Error>``)."""
    code, _, text = message.partition(": ")
    xml = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{text or code}</Message></Error>'
    return web.Response(status=status, text=xml, content_type="application/xml", headers={"x-ms-error-code": code})
