"""`send_online`: validate, encrypt and send invoices in online sessions, then report each invoice's final outcome.

`send_technical_correction` sends the technical correction of a rejected offline invoice (``hashOfCorrectedInvoice``
of ``SendInvoiceRequest``; official docs ``offline/korekta-techniczna.md``).

Steps: validate every invoice locally (nothing is sent if any is invalid, unless ``skip_invalid``); group them by
form code (one session per form); open the session; send the invoices concurrently (the shared rate limiter paces
them to KSeF's windows); close the session; wait until KSeF has processed it; read the per-invoice statuses from the
session's invoice list; download and parse the UPO.

Error 21184 (session temporarily unavailable) is handled by `ksef_async.online_retry.SessionUnavailablePolicy`:
the invoice is sent again after a bounded backoff; if the session stays unavailable it is given up (no further
invoice is sent into it), closed, and the invoices it did not accept go to a fresh online session. An invoice KSeF
acknowledged (202) is never sent again; ``InvoiceOutcome.unavailable_sessions`` names the sessions an invoice was
moved away from.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ksef_async import _telemetry as telemetry
from ksef_async._aio import task_group
from ksef_async._logging import extras, get_logger
from ksef_async.batch.selection import UnusableFileError, read_invoice_file
from ksef_async.core.codes import ExceptionCode, InvoiceStatus
from ksef_async.errors import (
    AmbiguousRequestError,
    ApiError,
    BadRequestError,
    ConfigurationError,
    CorrectionNotAllowedError,
    CorrectionUnavailableError,
    DeadlineExceededError,
    InvoiceError,
    InvoiceProblem,
    KsefError,
    SessionTemporarilyUnavailableError,
)
from ksef_async.models import FormCode, SessionInvoiceStatusResponse
from ksef_async.online_retry import SessionUnavailablePolicy, send_retrying_unavailable
from ksef_async.outage import OutageGuard, guarded
from ksef_async.resources._features import check_features
from ksef_async.resources.invoices import INVOICE_PENDING_CODES
from ksef_async.resources.online import OnlineSession
from ksef_async.xml.forms import FormCode as XmlFormCode
from ksef_async.xml.upo import Upo, parse_upo
from ksef_async.xml.validation import ValidatedInvoice, check_invoice

if TYPE_CHECKING:
    from ksef_async.client import KsefClient

__all__ = [
    "CORRECTION_NOT_ALLOWED",
    "CORRECTION_UNAVAILABLE",
    "DUPLICATE",
    "SESSION_UNAVAILABLE",
    "InvoiceOutcome",
    "OnlineSendResult",
    "SessionOutcome",
    "SessionUnavailablePolicy",
    "send_online",
    "send_technical_correction",
]

logger = get_logger("online")

ACCEPTED = InvoiceStatus.SUCCESS
"""Invoice status code: accepted, KSeF number assigned."""
DUPLICATE = InvoiceStatus.DUPLICATE
"""Invoice status code: duplicate; ``extensions`` name the original KSeF number and session."""
CORRECTION_UNAVAILABLE = ExceptionCode.CORRECTION_UNAVAILABLE
"""KSeF exception code: technical correction not available (e.g. a valid correction of the original exists)."""
CORRECTION_NOT_ALLOWED = ExceptionCode.CORRECTION_NOT_ALLOWED
"""KSeF exception code: the original invoice's status does not allow a technical correction."""
SESSION_UNAVAILABLE = ExceptionCode.SESSION_TEMPORARILY_UNAVAILABLE
"""KSeF exception code: the online session is temporarily unavailable (maintenance); the invoice was not accepted."""


@attrs.frozen(kw_only=True)
class InvoiceOutcome:
    """What happened to one invoice.

    Attributes:
        name: The invoice's name (file name) as given.
        invoice_hash: Base64 SHA-256 of its bytes (``invoiceHash``), when it was read.
        session_reference_number: The online session it was sent in.
        reference_number: KSeF's reference number of the invoice, once accepted for processing.
        ksef_number: The KSeF number, when accepted.
        status_code: KSeF's final invoice status code (200 accepted; 440 duplicate; 4xx/5xx rejected), or None
            when the invoice never got a status (invalid locally, not sent, or still processing).
        description: The status description, or the reason it has no status.
        details: The status details.
        original_ksef_number: For a duplicate: the KSeF number of the invoice already in KSeF.
        original_session_reference_number: For a duplicate: the session the original was sent in.
        problems: Local validation problems (nothing was sent).
        invoicing_mode: ``invoicingMode`` KSeF recorded (``Online`` or ``Offline``), once it has a status.
        unavailable_sessions: Sessions given up after 21184 (session temporarily unavailable) before they accepted
            this invoice, in order; it was then sent in ``session_reference_number``.
    """

    name: str
    invoice_hash: str | None = None
    session_reference_number: str | None = None
    reference_number: str | None = None
    ksef_number: str | None = None
    status_code: int | None = None
    description: str = ""
    details: tuple[str, ...] = ()
    original_ksef_number: str | None = None
    original_session_reference_number: str | None = None
    problems: tuple[InvoiceProblem, ...] = ()
    invoicing_mode: str | None = None
    unavailable_sessions: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        """Whether KSeF accepted the invoice and assigned a KSeF number."""
        return self.status_code == ACCEPTED and self.ksef_number is not None

    @property
    def duplicate(self) -> bool:
        """Whether KSeF rejected the invoice as a duplicate of one it already holds."""
        return self.status_code == DUPLICATE

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the CLI's ``--report`` entry)."""
        return {
            "file": self.name,
            "accepted": self.accepted,
            "ksef_number": self.ksef_number,
            "status_code": self.status_code,
            "description": self.description,
            "details": list(self.details),
            "reference_number": self.reference_number,
            "session_reference_number": self.session_reference_number,
            "unavailable_sessions": list(self.unavailable_sessions),
            "invoice_hash": self.invoice_hash,
            "invoicing_mode": self.invoicing_mode,
            "original_ksef_number": self.original_ksef_number,
            "original_session_reference_number": self.original_session_reference_number,
            "problems": [{"line": p.line, "rule": p.rule, "reason": p.reason} for p in self.problems],
        }


@attrs.frozen(kw_only=True)
class SessionOutcome:
    """One online session of a `send_online` call.

    Attributes:
        reference_number: The session's reference number.
        form_code: ``systemCode`` of its form (e.g. ``FA (3)``).
        status_code: Final session status code (200 processed; 445 no valid invoices ...), None if not final.
        description: The session status description.
        upo: The session UPO pages as received (hash-checked XML).
        parsed_upo: The same pages parsed.
        unavailable: KSeF answered 21184 here and the session was given up: the invoices it did not accept went
            to the next session.
    """

    reference_number: str
    form_code: str
    status_code: int | None
    description: str
    upo: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    parsed_upo: tuple[Upo, ...] = attrs.field(default=(), repr=False)
    unavailable: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "reference_number": self.reference_number,
            "form_code": self.form_code,
            "status_code": self.status_code,
            "description": self.description,
            "upo_pages": len(self.upo),
            "unavailable": self.unavailable,
        }


@attrs.frozen
class OnlineSendResult:
    """Per-invoice outcomes (in input order) and the sessions used."""

    outcomes: tuple[InvoiceOutcome, ...]
    sessions: tuple[SessionOutcome, ...]
    outages: tuple[dict[str, Any], ...] = ()
    """KSeF outages waited out (`ksef_async.outage.OutageGuard.report`), each with its offline deadline."""

    @property
    def all_accepted(self) -> bool:
        """Whether every invoice was accepted."""
        return all(o.accepted for o in self.outcomes)

    @property
    def accepted(self) -> list[InvoiceOutcome]:
        """The accepted invoices."""
        return [o for o in self.outcomes if o.accepted]

    @property
    def rejected(self) -> list[InvoiceOutcome]:
        """Every invoice that was not accepted (invalid, rejected, duplicate, or without a final status)."""
        return [o for o in self.outcomes if not o.accepted]

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the CLI's ``--report``)."""
        return {
            "accepted": len(self.accepted),
            "rejected": len(self.rejected),
            "sessions": [s.to_json() for s in self.sessions],
            "invoices": [o.to_json() for o in self.outcomes],
            "outages": list(self.outages),
        }


def _read(items: Iterable[tuple[str, bytes] | Path]) -> list[tuple[str, bytes | None, InvoiceProblem | None]]:
    out: list[tuple[str, bytes | None, InvoiceProblem | None]] = []
    for item in items:
        if isinstance(item, Path):
            try:  # refused by type (FIFO, device) and size before reading, as in the batch path
                out.append((str(item), read_invoice_file(item), None))
            except UnusableFileError as exc:
                out.append((str(item), None, InvoiceProblem(str(item), exc.reason, None, exc.rule)))
        else:
            name, data = item
            out.append((name, bytes(data), None))
    return out


def _validate(
    items: list[tuple[str, bytes | None, InvoiceProblem | None]],
) -> list[tuple[str, bytes | None, ValidatedInvoice | None, tuple[InvoiceProblem, ...]]]:
    checked: list[tuple[str, bytes | None, ValidatedInvoice | None, tuple[InvoiceProblem, ...]]] = []
    for name, data, read_problem in items:
        if data is None:
            checked.append((name, None, None, (read_problem,) if read_problem else ()))
            continue
        result = check_invoice(data, name)
        problems = result.problems
        if result.invoice is not None and result.invoice.has_attachment:
            problems = (
                InvoiceProblem(
                    name, "invoices with attachments (Zalacznik) go in batch sessions only", None, "attachment"
                ),
            )
        checked.append((name, data, result.invoice if not problems else None, problems))
    return checked


def _api_form_code(form_code: XmlFormCode) -> FormCode:
    return FormCode(system_code=form_code.system_code, schema_version=form_code.schema_version, value=form_code.value)


def _outcome_from_status(name: str, session_ref: str, status: SessionInvoiceStatusResponse) -> InvoiceOutcome:
    info = status.status
    ext = info.extensions or {}
    final = info.code not in INVOICE_PENDING_CODES
    return InvoiceOutcome(
        name=name,
        invoice_hash=base64.b64encode(status.invoice_hash).decode(),
        session_reference_number=session_ref,
        reference_number=status.reference_number,
        ksef_number=status.ksef_number,
        status_code=info.code if final else None,
        description=info.description if final else f"still processing ({info.code} {info.description})",
        details=tuple(info.details or ()),
        original_ksef_number=ext.get("originalKsefNumber"),
        original_session_reference_number=ext.get("originalSessionReferenceNumber"),
        invoicing_mode=None if status.invoicing_mode is None else str(status.invoicing_mode),
    )


async def send_online(
    client: KsefClient,
    invoices: Iterable[tuple[str, bytes] | Path],
    *,
    skip_invalid: bool = False,
    concurrency: int = 8,
    offline_mode: bool = False,
    max_wait: float | None = 600.0,
    download_upo: bool = True,
    features: Iterable[str] | None = None,
    unavailable: SessionUnavailablePolicy | None = None,
    outage: OutageGuard | None = None,
    on_outcome: Callable[[InvoiceOutcome], None] | None = None,
) -> OnlineSendResult:
    """Send invoices through online sessions and return each one's final outcome.

    Args:
        client: An open, logged-in (or credentialed) client.
        invoices: ``(name, xml_bytes)`` pairs or paths, sent as exactly those bytes.
        skip_invalid: Send the valid invoices even when some are invalid (the invalid ones get an outcome with
            their problems); by default nothing is sent if any invoice is invalid.
        concurrency: Invoices in flight at once per session; the rate limiter still paces the sends.
        offline_mode: Mark the invoices as issued in offline mode (``offlineMode``).
        max_wait: Seconds to wait for KSeF to process each session after closing it; None waits for ever. On
            expiry the unfinished invoices have no status code and say so.
        download_upo: Download (hash-checked) and parse the session UPO.
        features: ``X-KSeF-Feature`` values for the sessions (e.g. ``subject-identifier-validation``), added to
            the client's ``ClientConfig.features``.
        unavailable: What to do on 21184 (default `SessionUnavailablePolicy()`: retry with backoff, then a fresh
            session for the invoices not yet accepted).
        outage: Wait out KSeF outages announced by the status service when opening a session or sending an
            invoice fails with 5xx or a connection error (`ksef_async.outage.OutageGuard`); the windows seen are
            in the result's ``outages``.
        on_outcome: Called on the event loop with each invoice's outcome as soon as KSeF acknowledged it (its
            ``reference_number``), and with the final outcomes of a cancelled call (see below); it must not block.

    Cancellation: invoices not yet sent are not sent. The session is always closed (shielded: a background task
    finishes the close when the call is cancelled during it). Invoices KSeF acknowledged before the cancellation
    are logged (INFO, with their reference numbers) and passed to ``on_outcome``; after a cancellation during
    sending, a background task also waits (``max_wait``) for KSeF to process the session and passes their final
    outcomes, matched by reference number or hash, to ``on_outcome``.

    Raises:
        InvoiceError: Some invoices are invalid and ``skip_invalid`` is false (nothing was sent).
        ConfigurationError: No invoices, ``concurrency`` below 1, or a malformed feature name.
        SessionTemporarilyUnavailableError: A session stayed unavailable (21184) and the policy forbids another
            session (``reopen=False`` or ``max_sessions`` reached). That session was closed; the invoices it did
            not accept were not resent.
        KsefError: Opening a session failed (nothing of that session was sent).
    """
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
    policy = unavailable or SessionUnavailablePolicy()
    feature_list = check_features(features or (), field="features")
    checked = await asyncio.to_thread(lambda: _validate(_read(invoices)))
    if not checked:
        raise ConfigurationError("no invoices to send")
    problems = [p for _, _, _, ps in checked for p in ps]
    if problems and not skip_invalid:
        raise InvoiceError(problems)
    outcomes: list[InvoiceOutcome | None] = [
        InvoiceOutcome(name=name, description="invalid: not sent", problems=ps) if ps else None
        for name, _, _, ps in checked
    ]
    groups: dict[XmlFormCode, list[int]] = {}
    for index, (_, _, valid, _) in enumerate(checked):
        if valid is not None:
            groups.setdefault(valid.form.form_code, []).append(index)
    sessions: list[SessionOutcome] = []
    options = _Options(concurrency, offline_mode, max_wait, download_upo, feature_list, policy, outage, on_outcome)
    for form_code, indices in groups.items():
        session_items = []
        for i in indices:
            name, data, valid, _ = checked[i]
            assert data is not None
            assert valid is not None
            session_items.append(_Item(i, name, data, valid))
        sessions.extend(await _send_form(client, form_code, session_items, outcomes, options))
    final = tuple(
        o if o is not None else InvoiceOutcome(name=checked[i][0], description="not sent")
        for i, o in enumerate(outcomes)
    )
    sent = [o for o in final if o.reference_number is not None]
    accepted = sum(1 for o in sent if o.accepted or o.duplicate)
    rejected = sum(1 for o in sent if o.status_code is not None and not (o.accepted or o.duplicate))
    telemetry.invoices("online", sent=len(sent), accepted=accepted, rejected=rejected)
    return OnlineSendResult(final, tuple(sessions), () if outage is None else tuple(outage.report()))


@attrs.frozen
class _Item:
    index: int
    name: str
    data: bytes = attrs.field(repr=False)
    invoice: ValidatedInvoice


@attrs.frozen
class _Options:
    concurrency: int
    offline_mode: bool
    max_wait: float | None
    download_upo: bool
    features: tuple[str, ...]
    policy: SessionUnavailablePolicy
    outage: OutageGuard | None = None
    on_outcome: Callable[[InvoiceOutcome], None] | None = None

    def report(self, outcome: InvoiceOutcome) -> None:
        """Hand ``outcome`` to ``on_outcome``; an exception it raises is logged and ignored."""
        if self.on_outcome is None:
            return
        try:
            self.on_outcome(outcome)
        except Exception:
            logger.warning("the on_outcome callback raised for %s", outcome.name, exc_info=True)


@dataclass
class _Round:
    """One session's sending: what it did not accept because it was unavailable (21184), and KSeF's error."""

    leftover: list[_Item] = field(default_factory=list)
    error: SessionTemporarilyUnavailableError | None = None

    @property
    def given_up(self) -> bool:
        return self.error is not None


async def _send_form(
    client: KsefClient,
    form_code: XmlFormCode,
    items: Sequence[_Item],
    outcomes: list[InvoiceOutcome | None],
    options: _Options,
) -> list[SessionOutcome]:
    """Send one form's invoices: a session, and a fresh one for what an unavailable (21184) session left over."""
    pending = list(items)
    used: list[tuple[str, list[_Item], bool]] = []
    while True:
        session = await guarded(
            options.outage, lambda: client.online.open(_api_form_code(form_code), features=options.features)
        )
        ref = session.reference_number
        log = extras(reference_number=ref, form=form_code.system_code, invoices=len(pending))
        logger.info("online session %s opened for %d invoices", ref, len(pending), extra=log)
        telemetry.session_started("online", ref, form=form_code.system_code)
        try:
            round_ = await _send_all(client, session, pending, outcomes, options)
        except asyncio.CancelledError:
            _in_background(
                _finish_after_cancel(client, form_code, ref, items=pending, outcomes=outcomes, options=options)
            )
            raise
        except BaseException:
            await _shielded_close(client, session.reference_number)
            raise
        await _shielded_close(client, session.reference_number)
        left = {item.index for item in round_.leftover}
        used.append((ref, [item for item in pending if item.index not in left], round_.given_up))
        if not round_.leftover:
            break
        assert round_.error is not None
        if not options.policy.reopen or len(used) >= options.policy.max_sessions:
            logger.warning(
                "session %s unavailable (21184): giving up, %d invoices not sent",
                ref,
                len(left),
                extra=log | extras(left=len(left)),
            )
            raise round_.error
        logger.warning(
            "session %s unavailable (21184): sending %d invoices in a fresh session", ref, len(left), extra=log
        )
        pending = round_.leftover
    return [
        await _finish_session(client, form_code, ref, sent, outcomes, options=options, unavailable=given_up)
        for ref, sent, given_up in used
    ]


async def _finish_session(
    client: KsefClient,
    form_code: XmlFormCode,
    ref: str,
    items: Sequence[_Item],
    outcomes: list[InvoiceOutcome | None],
    *,
    options: _Options,
    unavailable: bool,
) -> SessionOutcome:
    """Wait until KSeF processed the closed session ``ref``, read its invoices' statuses and its UPO."""
    log = extras(reference_number=ref, form=form_code.system_code)
    try:
        status = await client.sessions.wait_until_processed(ref, max_wait=options.max_wait)
    except DeadlineExceededError as exc:
        logger.warning("session %s not processed in time", ref, extra=log)
        telemetry.session_ended("online", ref, None)
        return SessionOutcome(
            reference_number=ref,
            form_code=form_code.system_code,
            status_code=None,
            description=str(exc),
            unavailable=unavailable,
        )
    await _collect_statuses(client, ref, items, outcomes)
    pages: list[bytes] = []
    if options.download_upo and status.upo is not None:
        pages = [await client.sessions.download_upo(page.download_url) for page in status.upo.pages]
        telemetry.upo_received("online", ref)
    logger.info(
        "online session %s processed: status %d, %d invoices",
        ref,
        status.status.code,
        len(items),
        extra=log | extras(status=status.status.code),
    )
    telemetry.session_ended("online", ref, status.status.code)
    return SessionOutcome(
        reference_number=ref,
        form_code=form_code.system_code,
        status_code=status.status.code,
        description=status.status.description,
        upo=tuple(pages),
        parsed_upo=tuple(parse_upo(page) for page in pages),
        unavailable=unavailable,
    )


async def _send_all(
    client: KsefClient,
    session: OnlineSession,
    items: Sequence[_Item],
    outcomes: list[InvoiceOutcome | None],
    options: _Options,
) -> _Round:
    """Send ``items`` into ``session``; once an invoice exhausts the 21184 retries, send nothing more into it."""
    ref = session.reference_number
    semaphore = asyncio.Semaphore(options.concurrency)
    round_ = _Round()

    async def send_one(item: _Item) -> None:
        previous = outcomes[item.index]  # set only when an earlier session left this invoice over
        moved = () if previous is None else (*previous.unavailable_sessions, previous.session_reference_number or "")
        base = InvoiceOutcome(
            name=item.name, invoice_hash=item.invoice.sha256, session_reference_number=ref, unavailable_sessions=moved
        )
        async with semaphore:
            if round_.given_up:
                round_.leftover.append(item)
                outcomes[item.index] = attrs.evolve(
                    base, description=f"not sent: session {ref} was given up after {SESSION_UNAVAILABLE}"
                )
                return
            try:
                response = await send_retrying_unavailable(
                    lambda: guarded(
                        options.outage,
                        lambda: client.online.send(session, item.data, offline_mode=options.offline_mode),
                    ),
                    options.policy,
                    given_up=lambda: round_.given_up,
                    what=f"{item.name} in {ref}",
                )
            except SessionTemporarilyUnavailableError as exc:
                # Not accepted (no invoice reference number): safe to send again, in another session.
                round_.error = round_.error or exc
                round_.leftover.append(item)
                outcomes[item.index] = attrs.evolve(
                    base,
                    description=f"not accepted: session {ref} temporarily unavailable ({SESSION_UNAVAILABLE})",
                    details=tuple(f"exception code {code}" for code in exc.codes),
                )
                return
            except AmbiguousRequestError as exc:
                # Maybe sent: the session's invoice list (matched by hash) settles it after processing.
                outcomes[item.index] = attrs.evolve(base, description=str(exc))
                return
            except ApiError as exc:
                # Refused at the door (HTTP 4xx): no invoice status exists, so status_code stays None; the
                # KSeF exception codes go in details.
                outcomes[item.index] = attrs.evolve(
                    base,
                    description=f"refused by KSeF: {exc}",
                    details=tuple(f"exception code {code}" for code in exc.codes),
                )
                return
        outcomes[item.index] = sent = attrs.evolve(
            base, reference_number=response.reference_number, description="sent, no final status yet"
        )
        logger.info(
            "invoice %s sent in session %s as %s",
            item.name,
            ref,
            response.reference_number,
            extra=extras(reference_number=response.reference_number, session=ref),
        )
        options.report(sent)

    async with task_group() as group:
        for item in items:
            group.create_task(send_one(item))
    round_.leftover.sort(key=lambda item: item.index)
    return round_


async def _collect_statuses(
    client: KsefClient, ref: str, items: Sequence[_Item], outcomes: list[InvoiceOutcome | None]
) -> None:
    """Fill in final statuses from the session's invoice list, matched by reference number, else by hash."""
    by_reference: dict[str, _Item] = {}
    by_hash = {item.invoice.sha256: item for item in items}
    for item in items:
        outcome = outcomes[item.index]
        if outcome is not None and outcome.reference_number is not None:
            by_reference[outcome.reference_number] = item
    async for status in client.sessions.invoices(ref):
        match = by_reference.get(status.reference_number) or by_hash.get(base64.b64encode(status.invoice_hash).decode())
        if match is not None:
            before = outcomes[match.index]
            moved = before.unavailable_sessions if before is not None else ()
            outcomes[match.index] = attrs.evolve(
                _outcome_from_status(match.name, ref, status), unavailable_sessions=moved
            )


_BACKGROUND: set[asyncio.Task[None]] = set()
"""Closes and reconciliations that outlive a cancelled call (strong references until they end)."""


def _in_background(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


async def _shielded_close(client: KsefClient, reference_number: str) -> None:
    """Close the session; cancelling the caller does not stop the close (it finishes in the background)."""
    await asyncio.shield(_in_background(_close_ref(client, reference_number)))


async def _close_ref(client: KsefClient, reference_number: str) -> None:
    try:
        await client.online.close(reference_number)
        telemetry.session_closed("online", reference_number)
    except AmbiguousRequestError:
        logger.warning(
            "close of online session %s is ambiguous", reference_number, extra=extras(reference_number=reference_number)
        )
    except KsefError as exc:
        logger.warning(
            "close of online session %s failed: %s",
            reference_number,
            exc,
            extra=extras(reference_number=reference_number),
        )


async def _finish_after_cancel(
    client: KsefClient,
    form_code: XmlFormCode,
    ref: str,
    *,
    items: Sequence[_Item],
    outcomes: list[InvoiceOutcome | None],
    options: _Options,
) -> None:
    """After a cancellation during sending: close ``ref``, wait for KSeF, report what it received."""
    await _close_ref(client, ref)
    try:
        await client.sessions.wait_until_processed(ref, max_wait=options.max_wait)
        before = {item.index: outcomes[item.index] for item in items}
        await _collect_statuses(client, ref, items, outcomes)
    except KsefError as exc:
        logger.warning("cancelled send: session %s not settled: %s", ref, exc, extra=extras(reference_number=ref))
        return
    settled = 0
    for item in items:
        outcome = outcomes[item.index]
        if outcome is not None and outcome is not before[item.index] and outcome.status_code is not None:
            settled += 1
            options.report(outcome)
    logger.info(
        "cancelled send: session %s (%s) processed, %d invoices reported",
        ref,
        form_code.system_code,
        settled,
        extra=extras(reference_number=ref, invoices=settled),
    )


def _corrected_hash(original: bytes | Path | None, original_hash: str | None, corrected: bytes) -> str:
    """``hashOfCorrectedInvoice``: base64 SHA-256 of the original's exact bytes, checked locally."""
    if (original is None) == (original_hash is None):
        raise ConfigurationError("give exactly one of original (the rejected invoice's bytes) or original_hash")
    if original is not None:
        # A file is refused by type and size before it is read, as every invoice file.
        data = read_invoice_file(original) if isinstance(original, Path) else bytes(original)
        digest = hashlib.sha256(data).digest()
    else:
        assert original_hash is not None
        try:
            digest = base64.b64decode(original_hash, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ConfigurationError("original_hash: not the base64 of a SHA-256 digest (32 bytes)")
    if digest == hashlib.sha256(corrected).digest():
        raise ConfigurationError("the correction is byte-identical to the original: nothing would be corrected")
    return base64.b64encode(digest).decode()


async def send_technical_correction(
    client: KsefClient,
    corrected: bytes | Path,
    *,
    original: bytes | Path | None = None,
    original_hash: str | None = None,
    name: str | None = None,
    max_wait: float | None = 600.0,
    download_upo: bool = True,
    unavailable: SessionUnavailablePolicy | None = None,
) -> OnlineSendResult:
    """Send the technical correction of an offline invoice KSeF rejected, and return its final outcome.

    The corrected invoice is validated locally, then sent alone in a new online session for its form, with
    ``offlineMode`` true and ``hashOfCorrectedInvoice`` = base64 SHA-256 of the rejected original's exact bytes;
    the session is closed and, once KSeF has processed it, the outcome is read from its invoice list. Unlike
    ordinary online invoices, a correction may carry attachments (``Zalacznik``).

    Args:
        client: An open, logged-in (or credentialed) client.
        corrected: The corrected invoice (bytes or a path), sent as exactly those bytes.
        original: The rejected original's exact bytes (or path); or give ``original_hash``.
        original_hash: Base64 SHA-256 of the rejected original (its ``invoiceHash``).
        name: The corrected invoice's name in outcomes and errors (default: the path, or ``"correction"``).
        max_wait: Seconds to wait for KSeF to process the session; None waits for ever.
        download_upo: Download (hash-checked) and parse the session UPO.
        unavailable: Retries on 21184 (session temporarily unavailable); a correction is not moved to another
            session: after the last attempt the session is closed and the error raised.

    Returns:
        One outcome (``accepted`` when KSeF assigned a KSeF number) and the session.

    Raises:
        InvoiceError: The corrected invoice is invalid (nothing was sent).
        ConfigurationError: Neither or both of ``original``/``original_hash``, a malformed hash, an unreadable file,
            or a correction identical to the original.
        CorrectionUnavailableError: KSeF answered 21166 (e.g. a valid correction of that original exists).
        CorrectionNotAllowedError: KSeF answered 21167 (the original's status forbids a correction).
        SessionTemporarilyUnavailableError: KSeF answered 21184 to every attempt (nothing was accepted).
        KsefError: Opening the session or another request failed.

    Cancellation: the session is still closed (the close runs to its end); a correction already sent is settled
    by KSeF as usual and can be read from the session's invoice list (``client.sessions.invoices``).
    """
    label = name or (str(corrected) if isinstance(corrected, Path) else "correction")
    (checked,) = await asyncio.to_thread(
        lambda: _read([corrected if isinstance(corrected, Path) else (label, corrected)])
    )
    _, data, read_problem = checked
    if data is None:
        assert read_problem is not None
        raise InvoiceError([read_problem])
    result = await asyncio.to_thread(check_invoice, data, label)
    if result.invoice is None or result.problems:
        raise InvoiceError(result.problems)
    corrected_hash = _corrected_hash(original, original_hash, data)
    valid = result.invoice
    item = _Item(0, label, data, valid)
    form_code = valid.form.form_code
    session = await client.online.open(_api_form_code(form_code))
    ref = session.reference_number
    log = extras(reference_number=ref, form=form_code.system_code)
    logger.info("online session %s opened for a technical correction of %s", ref, label, extra=log)
    outcome = InvoiceOutcome(name=label, invoice_hash=valid.sha256, session_reference_number=ref)
    try:
        response = await send_retrying_unavailable(
            lambda: client.online.send(session, data, offline_mode=True, hash_of_corrected_invoice=corrected_hash),
            unavailable or SessionUnavailablePolicy(),
            given_up=lambda: False,
            what=f"{label} in {ref}",
        )
        outcome = attrs.evolve(outcome, reference_number=response.reference_number, description="sent, no final status")
    except AmbiguousRequestError as exc:
        # Maybe sent: the session's invoice list (matched by hash) settles it after processing.
        outcome = attrs.evolve(outcome, description=str(exc))
    except BadRequestError as exc:
        if exc.has_code(CORRECTION_UNAVAILABLE):
            raise CorrectionUnavailableError(label, exc) from exc
        if exc.has_code(CORRECTION_NOT_ALLOWED):
            raise CorrectionNotAllowedError(label, exc) from exc
        raise
    finally:
        await _shielded_close(client, session.reference_number)
    outcomes: list[InvoiceOutcome | None] = [outcome]
    try:
        status = await client.sessions.wait_until_processed(ref, max_wait=max_wait)
    except DeadlineExceededError as exc:
        logger.warning("session %s not processed in time", ref, extra=log)
        session_outcome = SessionOutcome(
            reference_number=ref, form_code=form_code.system_code, status_code=None, description=str(exc)
        )
        return OnlineSendResult((outcome,), (session_outcome,))
    await _collect_statuses(client, ref, [item], outcomes)
    pages: list[bytes] = []
    if download_upo and status.upo is not None:
        pages = [await client.sessions.download_upo(page.download_url) for page in status.upo.pages]
    final = outcomes[0]
    assert final is not None
    return OnlineSendResult(
        (final,),
        (
            SessionOutcome(
                reference_number=ref,
                form_code=form_code.system_code,
                status_code=status.status.code,
                description=status.status.description,
                upo=tuple(pages),
                parsed_upo=tuple(parse_upo(page) for page in pages),
            ),
        ),
    )
