"""Online sessions, the invoice pipeline shared with batch, status, listings and UPO documents.

The pipeline validates, deduplicates and numbers invoices; UPOs are served by the API and by pre-signed URLs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Any

from aiohttp import web
from lxml import etree

from ksef_async.core.crypto import (
    KEY_USAGE_SYMMETRIC,
    SessionKey,
    b64decode,
    decrypt_cbc,
    rsa_oaep_decrypt,
    sha256_b64,
)
from ksef_async.errors import CryptoError
from ksef_async.testing.simulator.features import (
    SUBJECT_IDENTIFIER_VALIDATION,
    party_identifier_problems,
    requested_features,
)
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import InvoiceEntry, Session, SessionKind, StoredInvoice, iso
from ksef_async.xml._resolver import DoctypeRefusedError, parse_untrusted
from ksef_async.xml.auth_request import ContextIdentifier, safe_xml_parser
from ksef_async.xml.upo import UpoDocument, build_session_upo_pages, build_upo
from ksef_async.xml.validation import ValidationResult, check_invoice

__all__ = [
    "close_online",
    "decrypt_session_key",
    "download_upo",
    "find_session",
    "get_invoice_status",
    "get_invoice_upo",
    "get_invoice_upo_by_ksef",
    "get_session",
    "get_session_upo",
    "invoice_json",
    "list_failed_invoices",
    "list_invoices",
    "list_sessions",
    "open_online",
    "open_session",
    "opt",
    "paged",
    "parse_form_code",
    "register_invoice",
    "req",
    "send_invoice",
    "session_status",
    "session_unavailable",
    "storage_error",
]

_MAX_DETAILS = 20
_FORM_CODES = {
    ("FA (3)", "1-0E", "FA"),
    ("FA (2)", "1-0E", "FA"),
    ("FA_RR (1)", "1-1E", "FA_RR"),
    ("PEF (3)", "2-1", "PEF"),
    ("PEF_KOR (3)", "2-1", "PEF"),
}


# -- request helpers ---------------------------------------------------------------------------------------------


def req(body: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``body[name]`` if present and of ``kind``; else 400 21405 naming the field."""
    if not isinstance(body, dict) or name not in body or body[name] is None:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"'{name}' is required"])
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"'{name}' has a wrong type"])
    return value


def opt(body: Any, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """Like `req` for an optional field: ``default`` when absent or null."""
    if not isinstance(body, dict) or body.get(name) is None:
        return default
    return req(body, name, kind)


def _b64_field(body: Any, name: str) -> bytes:
    try:
        return b64decode(req(body, name, str), field=name)
    except CryptoError:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"'{name}' is not Base64"]) from None


def parse_form_code(body: Any, *, batch: bool) -> dict[str, str]:
    """Read and check ``formCode`` (PEF forms are online-only)."""
    form = req(body, "formCode", dict)
    triple = (req(form, "systemCode", str), req(form, "schemaVersion", str), req(form, "value", str))
    if triple not in _FORM_CODES or (batch and triple[2] == "PEF"):
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"unsupported formCode {list(triple)}"])
    return {"systemCode": triple[0], "schemaVersion": triple[1], "value": triple[2]}


def decrypt_session_key(rt: Runtime, body: Any) -> SessionKey | None:
    """Unwrap ``encryption``; ``None`` when the key cannot be decrypted (the session then ends with status 415).

    Raises:
        ApiFailure: 400 21470 for an unknown ``publicKeyId``, 21405 for malformed fields.
    """
    encryption = req(body, "encryption", dict)
    wrapped = _b64_field(encryption, "encryptedSymmetricKey")
    iv = _b64_field(encryption, "initializationVector")
    key_id = opt(encryption, "publicKeyId", str)
    keys = rt.keys.candidates(KEY_USAGE_SYMMETRIC, key_id)
    if keys is None:
        raise ApiFailure(400, 21470, "Nieznany lub wycofany klucz publiczny (publicKeyId).")
    if len(iv) != 16:  # noqa: PLR2004
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", ["initializationVector must be 16 bytes"])
    for key in keys:
        try:
            secret = rsa_oaep_decrypt(key.private_key, wrapped)
            return SessionKey(secret, iv)
        except CryptoError:
            continue
    return None


def open_session(
    rt: Runtime,
    principal: Principal,
    kind: SessionKind,
    *,
    form_code: dict[str, str],
    key: SessionKey | None,
    offline_mode: bool = False,
) -> Session:
    """A new session of ``kind`` in the principal's context, valid for ``online_session_lifetime``, kept in the state.

    The caller sets what only a batch session has (declared parts, upload deadline).
    """
    now = rt.state.clock.now()
    session = Session(
        reference_number=rt.reference("SO" if kind is SessionKind.ONLINE else "SB"),
        kind=kind,
        context=principal.operation.context,
        auth_reference=principal.operation.reference_number,
        created=now,
        valid_until=now + rt.config.online_session_lifetime,
        form_code=form_code,
        key=key,
        offline_mode=offline_mode,
        updated=now,
    )
    rt.state.sessions[session.reference_number] = session
    return session


def find_session(rt: Runtime, principal: Principal | None, ref: str, kind: SessionKind | None = None) -> Session:
    """The caller's session ``ref`` (of ``kind`` when given); 400 21173 when there is none."""
    session = rt.state.sessions.get(ref)
    if (
        session is None
        or principal is None
        or session.context != principal.operation.context
        or (kind is not None and session.kind is not kind)
    ):
        raise ApiFailure(400, 21173, f"Sesja o numerze referencyjnym {ref} nie została odnaleziona.")
    return session


# -- the invoice pipeline ----------------------------------------------------------------------------------------


def _buyer(data: bytes) -> tuple[str, str] | None:
    """The buyer's identifier of an FA invoice (``Podmiot2/DaneIdentyfikacyjne``), for the invoice store."""
    try:
        root = parse_untrusted(data, safe_xml_parser())
    except (etree.XMLSyntaxError, DoctypeRefusedError):
        return None
    ident = root.find("{*}Podmiot2/{*}DaneIdentyfikacyjne")
    if ident is None:
        return None
    for child in ident:
        name = etree.QName(child).localname
        kind = {"NIP": "Nip", "NrVatUE": "VatUe", "NrID": "Other", "BrakID": "None"}.get(name)
        if kind is not None:
            return kind, (child.text or "").strip()
    return None


def register_invoice(
    rt: Runtime,
    session: Session,
    result: ValidationResult,
    data: bytes,
    *,
    received: float,
    reference: str,
    file_name: str | None,
    offline: bool,
    invoicing_time: float,
    corrects: InvoiceEntry | None = None,
) -> InvoiceEntry:
    """Decide an invoice's outcome (on the event loop: dedup and numbering touch shared state) and record it."""
    state = rt.state
    ordinal = len(session.invoices) + 1
    invoice_hash = sha256_b64(data)
    invoicing_dt = dt.datetime.fromtimestamp(invoicing_time, dt.UTC)
    mode = "Offline" if offline else "Online"
    entry = InvoiceEntry(ordinal, reference, invoice_hash, received, mode, 450, "", file_name=file_name)
    inv = result.invoice
    if inv is not None:
        entry.invoice_number = inv.invoice_number
        late = inv.issue_date is not None and inv.issue_date < invoicing_dt.date()
        entry.invoicing_mode = "Offline" if offline or late else "Online"
    form = result.form.form_code.to_json() if result.form is not None else None
    if inv is None:
        entry.final_code, entry.final_description = 450, "Błąd weryfikacji semantyki dokumentu faktury."
        entry.details = [str(p) for p in result.problems[:_MAX_DETAILS]]
    elif form != session.form_code:
        entry.final_code, entry.final_description = 450, "Błąd weryfikacji semantyki dokumentu faktury."
        entry.details = [f"{file_name or reference}: the document is {form}, the session declared {session.form_code}"]
    elif SUBJECT_IDENTIFIER_VALIDATION in session.features and (bad_ids := party_identifier_problems(data)):
        entry.final_code, entry.final_description = 450, "Błąd weryfikacji identyfikatorów podmiotów faktury."
        entry.details = bad_ids[:_MAX_DETAILS]
    elif inv.has_attachment and (
        (session.kind is SessionKind.ONLINE and corrects is None)
        or (inv.seller_nip or "") not in state.attachments_allowed
    ):
        entry.final_code, entry.final_description = 415, "Brak możliwości wysyłania faktury z załącznikiem."
    elif session.context[0] == "Nip" and inv.seller_nip != session.context[1]:
        entry.final_code, entry.final_description = 410, "Nieprawidłowy zakres uprawnień."
        entry.details = [f"seller NIP {inv.seller_nip} is not the context {session.context[1]}"]
    else:
        key = (inv.seller_nip or "", inv.invoice_type or "", inv.invoice_number or "")
        original = state.duplicates.get(key)
        if original is not None:
            entry.final_code, entry.final_description = 440, "Duplikat faktury."
            entry.details = [
                f"Duplikat faktury. Faktura o numerze KSeF: {original[1]} została już prawidłowo przesłana."
            ]
            entry.extensions = {"originalSessionReferenceNumber": original[0], "originalKsefNumber": original[1]}
        else:
            acquisition = dt.datetime.fromtimestamp(received + state.processing_delay, dt.UTC)
            number = rt.ksef_number(inv.seller_nip or "", invoicing_dt.date())
            entry.final_code, entry.final_description = 200, "Sukces"
            entry.ksef_number = number
            state.duplicates[key] = (session.reference_number, number)
            state.invoices[number] = StoredInvoice(
                ksef_number=number,
                content=data,
                invoice_hash=invoice_hash,
                size=len(data),
                seller_nip=inv.seller_nip or "",
                buyer_identifier=_buyer(data),
                invoice_number=inv.invoice_number or "",
                invoice_type=inv.invoice_type or "",
                form=session.form_code,
                issue_date=inv.issue_date,
                invoicing_date=invoicing_dt,
                acquisition_date=acquisition,
                permanent_storage_date=invoicing_dt + dt.timedelta(seconds=state.storage_delay),
                invoicing_mode=entry.invoicing_mode,
                has_attachment=inv.has_attachment,
                session_reference=session.reference_number,
                context=session.context,
            )
    session.invoices.append(entry)
    session.by_reference[reference] = entry
    session.updated = max(session.updated, received)
    return entry


def _visible(rt: Runtime, entry: InvoiceEntry, now: float) -> tuple[int, str, bool]:
    """``(code, description, final)`` of an invoice as seen at ``now``: 100, then 150, then the outcome."""
    delay = rt.state.processing_delay
    if delay <= 0 or now >= entry.received + delay:
        return entry.final_code, entry.final_description, True
    if now >= entry.received + delay / 2:
        return 150, "Trwa przetwarzanie", False
    return 100, "Faktura przyjęta do dalszego przetwarzania", False


def invoice_json(rt: Runtime, session: Session, entry: InvoiceEntry) -> dict[str, Any]:
    """The spec's ``SessionInvoiceStatusResponse`` of ``entry`` now."""
    now = rt.state.clock.now()
    code, description, final = _visible(rt, entry, now)
    invoicing = session.created if session.kind is SessionKind.BATCH else entry.received
    stored = rt.state.invoices.get(entry.ksef_number or "") if final and code == 200 else None  # noqa: PLR2004
    status: dict[str, Any] = {"code": code, "description": description}
    if final:
        status["details"] = entry.details
        status["extensions"] = entry.extensions
    body: dict[str, Any] = {
        "ordinalNumber": entry.ordinal_number,
        "invoiceNumber": entry.invoice_number,
        "ksefNumber": stored.ksef_number if stored else None,
        "referenceNumber": entry.reference_number,
        "invoiceHash": entry.invoice_hash,
        "invoiceFileName": entry.file_name,
        "acquisitionDate": iso(stored.acquisition_date) if stored else None,
        "invoicingDate": iso(dt.datetime.fromtimestamp(invoicing, dt.UTC)),
        "permanentStorageDate": None,
        "upoDownloadUrl": None,
        "upoDownloadUrlExpirationDate": None,
        "invoicingMode": entry.invoicing_mode,
        "status": status,
    }
    if stored is not None:
        if rt.state.clock.now_dt() >= stored.permanent_storage_date:
            body["permanentStorageDate"] = iso(stored.permanent_storage_date)
        url, expires = _invoice_upo_url(rt, session, entry)
        body["upoDownloadUrl"] = url
        body["upoDownloadUrlExpirationDate"] = expires
    return body


def session_status(rt: Runtime, session: Session) -> tuple[int, str]:
    """The session's status ``(code, description)`` now (sessions expire 12 h after opening)."""
    if session.key is None:
        return 415, "Błąd odszyfrowania dostarczonego klucza."
    if session.closed is None and rt.state.clock.now() > session.valid_until:
        session.closed = session.valid_until
        if session.kind is SessionKind.BATCH:  # never closed: cancelled (state diagram, 100 -> 440 after 12 h)
            session.final_code, session.final_description = 440, "Sesja anulowana. Przekroczono czas wysyłki."
            session.processing_done = session.valid_until
    if session.closed is None:
        return 100, "Sesja interaktywna otwarta" if session.kind is SessionKind.ONLINE else "Sesja wsadowa rozpoczęta"
    if session.kind is SessionKind.ONLINE:
        return _online_outcome(rt, session, session.closed)
    done = session.processing_done
    if session.final_code is None or done is None or rt.state.clock.now() < done + rt.state.processing_delay:
        return 150, "Trwa przetwarzanie"
    return session.final_code, session.final_description


def _online_outcome(rt: Runtime, session: Session, closed: float) -> tuple[int, str]:
    last = max([closed, *(e.received for e in session.invoices)])
    if rt.state.processing_delay > 0 and rt.state.clock.now() < last + rt.state.processing_delay:
        return 170, "Sesja interaktywna zamknięta"
    if not session.invoices:
        return 440, "Sesja anulowana. Nie przesłano faktur."
    if any(e.final_code == 200 for e in session.invoices):  # noqa: PLR2004
        return 200, "Sesja interaktywna przetworzona pomyślnie"
    return 445, "Błąd weryfikacji, brak poprawnych faktur"


def _counts(rt: Runtime, session: Session) -> tuple[int, int, int]:
    now = rt.state.clock.now()
    ok = failed = 0
    for entry in session.invoices:
        code, _, final = _visible(rt, entry, now)
        if final:
            ok += code == 200  # noqa: PLR2004
            failed += code != 200  # noqa: PLR2004
    return len(session.invoices), ok, failed


# -- UPO ---------------------------------------------------------------------------------------------------------


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


def _session_upo_pages(rt: Runtime, session: Session) -> list[tuple[str, bytes]]:
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


def _invoice_upo_url(rt: Runtime, session: Session, entry: InvoiceEntry) -> tuple[str, str]:
    expires = rt.state.clock.now() + rt.config.download_url_lifetime
    url = rt.sign_url(f"/storage/upo/{session.reference_number}/invoices/{entry.reference_number}", "r", expires)
    return url, iso(dt.datetime.fromtimestamp(int(expires), dt.UTC))


def _xml(data: bytes) -> web.Response:
    return web.Response(
        body=data, content_type="application/xml", charset="utf-8", headers={"x-ms-meta-hash": sha256_b64(data)}
    )


# -- handlers: online session ------------------------------------------------------------------------------------


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
    ciphertext = _b64_field(body, "encryptedInvoiceContent")
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
    code, _, final = _visible(rt, original, rt.state.clock.now())
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
    total, ok, failed = _counts(rt, session)
    upo = None
    if code == 200:  # noqa: PLR2004
        pages = await asyncio.get_running_loop().run_in_executor(None, _session_upo_pages, rt, session)
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


def _page_size(request: web.Request, low: int, high: int) -> int:
    raw = request.query.get("pageSize", str(low))
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if not low <= size <= high:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"pageSize must be {low}..{high}"])
    return size


def paged(
    rt: Runtime, request: web.Request, scope: str, items: list[Any], *, low: int, high: int
) -> tuple[list[Any], str | None]:
    """One page of ``items`` per ``pageSize`` (``low..high``) and ``x-continuation-token``; the next token or None."""
    size = _page_size(request, low, high)
    offset = rt.parse_continuation(scope, request.headers.get("x-continuation-token"))
    page = items[offset : offset + size]
    more = offset + size < len(items)
    return page, rt.continuation(scope, offset + size) if more else None


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
    failed = [e for e in session.invoices if (v := _visible(rt, e, now))[2] and v[0] != 200]  # noqa: PLR2004
    page, token = paged(rt, request, f"failed:{session.reference_number}", failed, low=10, high=1000)
    return web.json_response({"continuationToken": token, "invoices": [invoice_json(rt, session, e) for e in page]})


async def get_invoice_status(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
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
        total, ok, failed = _counts(rt, session)
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


# -- handlers: UPO -----------------------------------------------------------------------------------------------


def _processed(rt: Runtime, session: Session) -> None:
    if session_status(rt, session)[0] != 200:  # noqa: PLR2004
        raise ApiFailure(400, 21178, "Nie odnaleziono UPO.", ["the session has no UPO (yet)"])


async def get_session_upo(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /sessions/{referenceNumber}/upo/{upoReferenceNumber}``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
    _processed(rt, session)
    pages = await asyncio.get_running_loop().run_in_executor(None, _session_upo_pages, rt, session)
    for ref, data in pages:
        if ref == request.match_info["upoReferenceNumber"]:
            return _xml(data)
    raise ApiFailure(400, 21178, "Nie odnaleziono UPO.")


def _final_ok(rt: Runtime, entry: InvoiceEntry | None) -> InvoiceEntry:
    if entry is None or _visible(rt, entry, rt.state.clock.now()) != (200, entry.final_description, True):
        raise ApiFailure(400, 21178, "Nie odnaleziono UPO.")
    return entry


async def get_invoice_upo(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}/upo``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
    entry = _final_ok(rt, session.by_reference.get(request.match_info["invoiceReferenceNumber"]))
    return _xml(_invoice_upo(rt, session, entry))


async def get_invoice_upo_by_ksef(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /sessions/{referenceNumber}/invoices/ksef/{ksefNumber}/upo``."""
    session = find_session(rt, principal, request.match_info["referenceNumber"])
    number = request.match_info["ksefNumber"]
    entry = next((e for e in session.invoices if e.ksef_number == number), None)
    entry = _final_ok(rt, entry)
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
    pages = await asyncio.get_running_loop().run_in_executor(None, _session_upo_pages, rt, session)
    for ref, data in pages:
        if ref == request.match_info["upo"]:
            return _xml(data)
    return storage_error(404, "BlobNotFound: The specified blob does not exist.")


def storage_error(status: int, message: str) -> web.Response:
    """An Azure-Blob-style XML error (``<Error><Code/><Message/></Error>``)."""
    code, _, text = message.partition(": ")
    xml = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{text or code}</Message></Error>'
    return web.Response(status=status, text=xml, content_type="application/xml", headers={"x-ms-error-code": code})
