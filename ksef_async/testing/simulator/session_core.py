"""Sessions and their invoices: opening and finding sessions, the invoice pipeline shared with batch, statuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lxml import etree

from ksef_async.core.crypto import (
    KEY_USAGE_SYMMETRIC,
    SessionKey,
    rsa_oaep_decrypt,
    sha256_b64,
)
from ksef_async.errors import CryptoError
from ksef_async.testing.simulator.features import (
    SUBJECT_IDENTIFIER_VALIDATION,
    party_identifier_problems,
)
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import b64_field, opt, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import InvoiceEntry, Session, SessionKind, StoredInvoice, iso
from ksef_async.xml._resolver import DoctypeRefusedError, parse_untrusted
from ksef_async.xml.auth_request import safe_xml_parser
from ksef_async.xml.validation import ValidationResult

__all__ = [
    "decrypt_session_key",
    "find_session",
    "invoice_counts",
    "invoice_json",
    "invoice_upo_url",
    "open_session",
    "parse_form_code",
    "register_invoice",
    "session_status",
    "visible",
]


_MAX_DETAILS = 20
_FORM_CODES = {
    ("FA (3)", "1-0E", "FA"),
    ("FA (2)", "1-0E", "FA"),
    ("FA_RR (1)", "1-1E", "FA_RR"),
    ("PEF (3)", "2-1", "PEF"),
    ("PEF_KOR (3)", "2-1", "PEF"),
}


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
    wrapped = b64_field(encryption, "encryptedSymmetricKey")
    iv = b64_field(encryption, "initializationVector")
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


def find_session(
    rt: Runtime,
    principal: Principal | None,
    ref: str,
    kind: SessionKind | None = None,
    *,
    missing: ApiFailure | None = None,
) -> Session:
    """The caller's session ``ref`` (of ``kind`` when given); when there is none, ``missing`` or else 400 21173.

    ``missing`` serves the operations whose 400 table does not list 21173 (the invoice and UPO sub-resources).
    """
    session = rt.state.sessions.get(ref)
    if (
        session is None
        or principal is None
        or session.context != principal.operation.context
        or (kind is not None and session.kind is not kind)
    ):
        raise missing or ApiFailure(
            400, 21173, "Brak sesji o wskazanym numerze referencyjnym.", [no_session_detail(ref)]
        )
    return session


def no_session_detail(ref: str) -> str:
    """The spec's ``Details`` of 21173: "Sesja o numerze referencyjnym {referenceNumber} nie została znaleziona."."""
    return f"Sesja o numerze referencyjnym {ref} nie została znaleziona."


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


def visible(rt: Runtime, entry: InvoiceEntry, now: float) -> tuple[int, str, bool]:
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
    code, description, final = visible(rt, entry, now)
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
        url, expires = invoice_upo_url(rt, session, entry)
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


def invoice_counts(rt: Runtime, session: Session) -> tuple[int, int, int]:
    """``(total, succeeded, failed)`` invoices of ``session`` as seen now."""
    now = rt.state.clock.now()
    ok = failed = 0
    for entry in session.invoices:
        code, _, final = visible(rt, entry, now)
        if final:
            ok += code == 200  # noqa: PLR2004
            failed += code != 200  # noqa: PLR2004
    return len(session.invoices), ok, failed


def invoice_upo_url(rt: Runtime, session: Session, entry: InvoiceEntry) -> tuple[str, str]:
    """A pre-signed download URL of ``entry``'s UPO and its expiry (ISO 8601)."""
    expires = rt.state.clock.now() + rt.config.download_url_lifetime
    url = rt.sign_url(f"/storage/upo/{session.reference_number}/invoices/{entry.reference_number}", "r", expires)
    return url, iso(dt.datetime.fromtimestamp(int(expires), dt.UTC))
