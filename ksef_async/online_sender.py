"""`OnlineSender`: one long-lived online session per form code, shared by concurrent `submit` calls (web backends).

::

    async with KsefClient(...) as client, OnlineSender(client, form_code="FA (3)") as sender:
        outcome = await sender.submit(xml_bytes)        # KSeF number, or a typed rejection
    sender.sessions                                      # the closed sessions, each with its UPO

What `submit` does: validate the invoice locally (`ksef_async.errors.InvoiceError` before anything is sent),
take the sender's open session (opening one the first time), encrypt and send the invoice, then poll only that
invoice's status (``GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}``) until KSeF has processed
it, and return its `ksef_async.online.InvoiceOutcome`. The session stays open for the next invoice.

Session life: one session at a time. It is *retired* (no further invoice goes into it; it is closed and its UPO
collected once its in-flight sends have ended) when it has been idle for ``idle_timeout`` seconds, when it is
``max_session_age`` old, when less than ``rotate_margin`` seconds of its ``validUntil`` remain, or when a send
into it fails with 21180 (session status forbids the operation), 21173 (no such session) or 21184 (session
temporarily unavailable, after the `SessionUnavailablePolicy` retries). A retired session is replaced on the next
send, once: the replacement is opened under a lock, and every submit that saw the old session fail follows the
one new session instead of opening its own (the check is by session generation, so a late failure of an old
session never retires the new one). An invoice refused with one of those codes was not accepted and is sent again
into the new session; an invoice KSeF acknowledged is never sent again.

Outages: the transport waits for KSeF to accept connections again (one probe at a time, no limiter slot spent) and
an `ksef_async.outage.OutageGuard`, when given, waits out announced outages; a session KSeF dropped meanwhile
answers 21180/21173 and is replaced as above.

Results never get lost: every acknowledged invoice and every final outcome goes to ``on_event`` (a
`SenderEvent`) and to the bounded ``outcomes`` log, also when the `submit` that sent it was cancelled; the
sessions' UPOs are in ``sessions`` after the sender is closed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime as dt
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import attrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.polling import Backoff
from ksef_async.errors import (
    AmbiguousRequestError,
    ApiError,
    BadRequestError,
    ConfigurationError,
    DeadlineExceededError,
    InvoiceError,
    InvoiceProblem,
    KsefError,
    SessionTemporarilyUnavailableError,
)
from ksef_async.online import InvoiceOutcome, SessionOutcome, _api_form_code, _outcome_from_status
from ksef_async.online_retry import SessionUnavailablePolicy, send_retrying_unavailable
from ksef_async.outage import OutageGuard, guarded
from ksef_async.ratelimit import limiter_wait
from ksef_async.resources._features import check_features
from ksef_async.resources.online import OnlineSession
from ksef_async.resources.sessions import SESSION_PENDING_CODES
from ksef_async.xml.forms import FORMS
from ksef_async.xml.forms import FormCode as XmlFormCode
from ksef_async.xml.upo import parse_upo
from ksef_async.xml.validation import ValidatedInvoice, check_invoice

if TYPE_CHECKING:
    from ksef_async.client import KsefClient

__all__ = ["REOPEN_CODES", "OnlineSender", "SenderEvent"]

logger = get_logger("online")

SESSION_NOT_FOUND = 21173
"""KSeF exception code: no session with that reference number."""
SESSION_STATUS_FORBIDS = 21180
"""KSeF exception code: the session's status forbids the operation (e.g. it was closed)."""
REOPEN_CODES = frozenset({SESSION_NOT_FOUND, SESSION_STATUS_FORBIDS})
"""Exception codes of an invoice send after which the session is replaced and the invoice sent again."""

_STATUS_BACKOFF = Backoff(initial=0.2, factor=1.5, maximum=2.0)


def _check_positive_or_none(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, int | float) and 0 < value < math.inf):
        raise ConfigurationError(f"OnlineSender {name} must be a finite number > 0 or None, got {value!r}")


@attrs.frozen(kw_only=True)
class SenderEvent:
    """Something that happened in an `OnlineSender`, for the application's event stream.

    Attributes:
        kind: ``session-opened``, ``session-retired``, ``session-closed`` (with ``session``: its final status and
            UPO), ``invoice-sent`` (KSeF acknowledged it: ``outcome.reference_number`` is set) or
            ``invoice-outcome`` (final, or the best known when KSeF did not finish in time).
        session_reference_number: The session concerned.
        outcome: The invoice's outcome (invoice events).
        session: The closed session (``session-closed``).
        reason: Why a session was retired (``idle``, ``rotation``, ``21180``, ``closing``...).
        cancelled: The `submit` that sent this invoice had been cancelled by its caller.
    """

    kind: str
    session_reference_number: str | None = None
    outcome: InvoiceOutcome | None = None
    session: SessionOutcome | None = None
    reason: str = ""
    cancelled: bool = False


@attrs.define(eq=False)
class _Live:
    """One online session of the sender and its bookkeeping."""

    session: OnlineSession
    generation: int
    opened_at: float
    last_used: float
    inflight: int = 0
    retired: bool = False
    reason: str = ""
    drained: asyncio.Event = attrs.field(factory=asyncio.Event)
    sent: int = 0
    ambiguous: list[_Job] = attrs.field(factory=list)

    @property
    def reference_number(self) -> str:
        return self.session.reference_number


@attrs.define(eq=False)
class _Job:
    """One submitted invoice: its validated form, its outcome so far, whether its caller went away."""

    name: str
    data: bytes
    invoice: ValidatedInvoice
    outcome: InvoiceOutcome
    started_sending: bool = False
    cancelled: bool = False


def _form_of(form_code: str | XmlFormCode) -> XmlFormCode:
    if isinstance(form_code, XmlFormCode):
        return form_code
    for form in FORMS:
        if form.form_code.system_code == form_code:
            return form.form_code
    known = ", ".join(sorted({f.form_code.system_code for f in FORMS}))
    raise ConfigurationError(f"form_code: unknown systemCode {form_code!r}; known: {known}")


class OnlineSender:
    """Keeps one online session of one form code open and sends invoices into it as they come.

    Args:
        client: An open client with credentials; it must stay open while the sender is.
        form_code: The ``systemCode`` of the invoices' form (``"FA (3)"``, ``"FA (2)"``, ``"PEF (3)"``...) or a
            `ksef_async.xml.forms.FormCode`; an invoice of another form is refused before sending.
        idle_timeout: Close the session after this many seconds without a send (default 300; None: never).
        max_session_age: Rotate to a new session once the current one is this old (default 11 h; None: only by
            ``rotate_margin``). KSeF closes online sessions after 12 h.
        rotate_margin: Rotate when less than this many seconds remain until the session's ``validUntil``
            (default 600).
        status_timeout: Seconds a `submit` polls its invoice's status before returning the outcome without a
            final status (default 300; None: until final). The status is also read once more when the session
            is closed.
        status_backoff: Waits between status polls (default 0.2 s growing to 2 s).
        offline_mode: Mark the invoices as issued in offline mode (``offlineMode``).
        features: ``X-KSeF-Feature`` values for the sessions, added to ``ClientConfig.features``.
        unavailable: The 21184 policy (retries into the same session, then a new session; default
            `SessionUnavailablePolicy()`); ``max_sessions`` bounds the sessions one invoice may try.
        outage: Waits out announced KSeF outages when opening a session or sending fails (5xx, connection).
        download_upo: Download the UPO of each closed session (default True); ``upo_timeout`` bounds the wait
            for KSeF to process a closed session (default 600 s).
        max_limiter_wait: Longest rate-limiter wait of each send in seconds (default None: the client's
            ``ClientConfig.max_limiter_wait``); a longer one raises `ksef_async.errors.RateLimitWaitExceededError`
            from `submit` before the invoice is sent.
        on_event: Called with every `SenderEvent` on the event loop; it must not block; an exception it raises
            is logged and ignored.
        outcome_log: How many of the latest outcomes ``outcomes`` keeps (default 10,000).
        clock: Monotonic clock in seconds (session age and idleness).
    """

    def __init__(
        self,
        client: KsefClient,
        *,
        form_code: str | XmlFormCode = "FA (3)",
        idle_timeout: float | None = 300.0,
        max_session_age: float | None = 11 * 3600.0,
        rotate_margin: float = 600.0,
        status_timeout: float | None = 300.0,
        status_backoff: Backoff | None = None,
        offline_mode: bool = False,
        features: tuple[str, ...] | list[str] | None = None,
        unavailable: SessionUnavailablePolicy | None = None,
        outage: OutageGuard | None = None,
        download_upo: bool = True,
        upo_timeout: float | None = 600.0,
        max_limiter_wait: float | None = None,
        on_event: Callable[[SenderEvent], None] | None = None,
        outcome_log: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("idle_timeout", idle_timeout),
            ("max_session_age", max_session_age),
            ("status_timeout", status_timeout),
            ("upo_timeout", upo_timeout),
        ):
            _check_positive_or_none(name, value)
        if not (isinstance(rotate_margin, int | float) and 0 <= rotate_margin < math.inf):
            raise ConfigurationError(f"OnlineSender rotate_margin must be a finite number >= 0, got {rotate_margin!r}")
        if max_limiter_wait is not None and not (0 <= max_limiter_wait < math.inf):
            raise ConfigurationError(f"OnlineSender max_limiter_wait must be >= 0 or None, got {max_limiter_wait!r}")
        if outcome_log < 1:
            raise ConfigurationError(f"OnlineSender outcome_log must be >= 1, got {outcome_log!r}")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("OnlineSender on_event must be a callable or None")
        self.client = client
        self.form_code = _form_of(form_code)
        self.idle_timeout = idle_timeout
        self.max_session_age = max_session_age
        self.rotate_margin = rotate_margin
        self.status_timeout = status_timeout
        self.status_backoff = status_backoff or _STATUS_BACKOFF
        self.offline_mode = offline_mode
        self.features = check_features(features or (), field="features")
        self.policy = unavailable or SessionUnavailablePolicy()
        self.outage = outage
        self.download_upo = download_upo
        self.upo_timeout = upo_timeout
        self.max_limiter_wait = max_limiter_wait
        self.on_event = on_event
        self.outcomes: collections.deque[InvoiceOutcome] = collections.deque(maxlen=outcome_log)
        """The latest outcomes (acknowledged and final), oldest first; cancelled submits' included."""
        self.sessions: list[SessionOutcome] = []
        """The sessions closed so far, with final status and UPO, in closing order."""
        self.sessions_opened = 0
        """Sessions this sender opened."""
        self._clock = clock
        self._current: _Live | None = None
        self._generation = 0
        self._opener: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[InvoiceOutcome]] = set()
        self._closers: set[asyncio.Task[None]] = set()
        self._idle_task: asyncio.Task[None] | None = None
        self._closed = False
        self._entered = False

    def __repr__(self) -> str:
        current = None if self._current is None else self._current.reference_number
        return (
            f"OnlineSender(form_code={self.form_code.system_code!r}, session={current!r},"
            f" opened={self.sessions_opened}, in_flight={len(self._jobs)})"
        )

    @property
    def session_reference_number(self) -> str | None:
        """The reference number of the session new invoices go into (None before the first send or when idle)."""
        live = self._current
        return None if live is None or live.retired else live.reference_number

    async def __aenter__(self) -> Self:
        """Start the idle watcher; the first session is opened by the first `submit` (nothing to cancel here)."""
        if self._closed:
            raise ConfigurationError("this OnlineSender was closed; create a new one")
        self._entered = True
        if self.idle_timeout is not None:
            self._idle_task = asyncio.create_task(self._watch_idle(), name="ksef-online-sender-idle")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- submitting ----------------------------------------------------------------------------------------------

    async def submit(self, invoice: bytes, *, name: str | None = None) -> InvoiceOutcome:
        """Validate, encrypt and send one invoice, and return its outcome once KSeF has processed it.

        Args:
            invoice: The invoice's exact XML bytes (sent as they are).
            name: The invoice's name in outcomes and logs (default ``invoice-<sha256 prefix>``).

        Returns:
            The outcome: ``accepted`` with the KSeF number, or KSeF's rejection (``status_code``,
            ``description``, ``details``; duplicates with the original's KSeF number). When KSeF did not finish
            within ``status_timeout``, or the send was ambiguous, ``status_code`` is None and ``description``
            says why; the final outcome then arrives through ``on_event``/``outcomes`` when the session closes.

        Raises:
            InvoiceError: The invoice is invalid, has attachments, or is of another form (nothing was sent).
            RateLimitWaitExceededError: The limiter would wait longer than ``max_limiter_wait`` (nothing sent).
            SessionTemporarilyUnavailableError: 21184 in every session the policy allows (nothing accepted).
            ConfigurationError: The sender is not open.
            KsefError: Opening the session or sending failed otherwise (the invoice was not accepted).

        Cancellation: while the invoice is validated or waits for the session, nothing is sent and nothing
        remains. Once its send has started (the limiter wait included), the send and the status polling carry on
        in the background: the reference number and the outcome reach ``on_event`` and ``outcomes`` (events
        marked ``cancelled``), and `close` waits for them.
        """
        if not self._entered or self._closed:
            raise ConfigurationError("the OnlineSender is not open: use 'async with OnlineSender(...)'")
        data = bytes(invoice)
        label = name or "invoice"
        result = await asyncio.to_thread(check_invoice, data, label)
        problems = list(result.problems)
        valid = result.invoice
        if valid is not None and not problems:
            if valid.has_attachment:
                problems.append(
                    InvoiceProblem(
                        label, "invoices with attachments (Zalacznik) go in batch sessions only", None, "attachment"
                    )
                )
            elif valid.form.form_code != self.form_code:
                problems.append(
                    InvoiceProblem(
                        label,
                        f"form {valid.form.form_code.system_code} does not match the sender's"
                        f" {self.form_code.system_code}",
                        None,
                        "form-code",
                    )
                )
        if problems or valid is None:
            raise InvoiceError(problems)
        if name is None:
            label = f"invoice-{valid.sha256[:12]}"
        job = _Job(label, data, valid, InvoiceOutcome(name=label, invoice_hash=valid.sha256))
        task = asyncio.create_task(self._run(job), name=f"ksef-online-submit-{label}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        task.add_done_callback(_retrieve)  # a cancelled caller never reads a failure: it is logged, not warned of
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not job.started_sending:
                task.cancel()
            else:
                job.cancelled = True
                logger.info(
                    "submit of %s cancelled after its send started: the outcome goes to the outcome log",
                    label,
                    extra=extras(invoice=label),
                )
            raise

    async def _run(self, job: _Job) -> InvoiceOutcome:
        """Send ``job`` (reopening as needed) and poll its status; every result reaches the outcome log."""
        live, reference = await self._send(job)
        if reference is None:
            return job.outcome
        self._record("invoice-sent", job, live.reference_number)
        try:
            status = await self.client.invoices.wait_for_status(
                live.reference_number, reference, max_wait=self.status_timeout, backoff=self.status_backoff
            )
        except DeadlineExceededError as exc:
            job.outcome = attrs.evolve(job.outcome, description=f"sent, not processed yet: {exc}")
        except KsefError as exc:
            job.outcome = attrs.evolve(job.outcome, description=f"sent, status unknown: {exc}")
        else:
            job.outcome = attrs.evolve(
                _outcome_from_status(job.name, live.reference_number, status),
                unavailable_sessions=job.outcome.unavailable_sessions,
            )
            logger.info(
                "invoice %s (%s) in session %s: %s %s",
                job.name,
                reference,
                live.reference_number,
                job.outcome.status_code,
                job.outcome.ksef_number or job.outcome.description,
                extra=extras(reference_number=reference, session=live.reference_number),
            )
        self._record("invoice-outcome", job, live.reference_number)
        return job.outcome

    async def _send(self, job: _Job) -> tuple[_Live, str | None]:
        """Send into the current session, replacing it (once, for every waiter) on 21180/21173/21184."""
        tried: list[str] = []
        while True:
            live = await self._session()
            live.inflight += 1
            live.last_used = self._clock()
            job.started_sending = True
            ref = live.reference_number
            try:
                response = await self._send_into(live, job)
            except SessionTemporarilyUnavailableError:
                # Not accepted: safe to send again, into the one replacement session.
                self._retire(live, "21184")
                tried.append(ref)
                if not self.policy.reopen or len(tried) >= self.policy.max_sessions:
                    raise
                job.outcome = attrs.evolve(job.outcome, unavailable_sessions=tuple(tried))
                continue
            except BadRequestError as exc:
                codes = REOPEN_CODES.intersection(exc.codes)
                if not codes:
                    raise
                self._retire(live, str(min(codes)))
                tried.append(ref)
                if len(tried) >= self.policy.max_sessions:
                    raise
                continue
            except AmbiguousRequestError as exc:
                # Maybe sent: the session's invoice list (matched by hash) settles it when the session is closed.
                live.sent += 1
                job.outcome = attrs.evolve(job.outcome, session_reference_number=ref, description=str(exc))
                live.ambiguous.append(job)
                self._record("invoice-sent", job, ref)
                return live, None
            finally:
                self._done_sending(live)
            live.sent += 1
            job.outcome = attrs.evolve(
                job.outcome,
                session_reference_number=ref,
                reference_number=response.reference_number,
                description="sent, no final status yet",
            )
            logger.info(
                "invoice %s sent in session %s as %s",
                job.name,
                ref,
                response.reference_number,
                extra=extras(reference_number=response.reference_number, session=ref),
            )
            return live, response.reference_number

    async def _send_into(self, live: _Live, job: _Job) -> Any:
        """One send of ``job`` into ``live`` with the 21184 retries, the outage guard and the limiter bound."""
        bound = limiter_wait(self.max_limiter_wait) if self.max_limiter_wait is not None else None
        with bound or contextlib.nullcontext():
            return await send_retrying_unavailable(
                lambda: guarded(
                    self.outage,
                    lambda: self.client.online.send(live.session, job.data, offline_mode=self.offline_mode),
                ),
                self.policy,
                given_up=lambda: live.retired,
                what=f"{job.name} in {live.reference_number}",
            )

    # -- sessions ------------------------------------------------------------------------------------------------

    def _usable(self, live: _Live) -> str | None:
        """Why ``live`` must not take another invoice (None: it may)."""
        if live.retired:
            return live.reason or "retired"
        now = self._clock()
        if self.max_session_age is not None and now - live.opened_at >= self.max_session_age:
            return "rotation (age)"
        remaining = (live.session.valid_until - dt.datetime.now(dt.UTC)).total_seconds()
        if remaining <= self.rotate_margin:
            return "rotation (validUntil)"
        return None

    async def _session(self) -> _Live:
        """The session to send into: the current one, or the one replacement every waiter follows.

        The replacement is opened by one background task (shielded: a cancelled submit never leaves a session
        opened at KSeF without the sender knowing it); every caller that finds no usable session awaits that
        same task.
        """
        while True:
            live = self._current
            if live is not None:
                reason = self._usable(live)
                if reason is None:
                    return live
                self._retire(live, reason)
            if self._closed:
                raise ConfigurationError("the OnlineSender is closed")
            opener = self._opener
            if opener is None or opener.done():
                opener = self._opener = asyncio.create_task(self._open(), name="ksef-online-sender-open")
                opener.add_done_callback(_retrieve)
            await asyncio.shield(opener)

    async def _open(self) -> None:
        session = await guarded(
            self.outage,
            lambda: self.client.online.open(_api_form_code(self.form_code), features=self.features),
        )
        self._generation += 1
        now = self._clock()
        live = _Live(session, self._generation, now, now)
        self._current = live
        self.sessions_opened += 1
        logger.info(
            "online session %s opened for %s (session %d of this sender)",
            live.reference_number,
            self.form_code.system_code,
            self.sessions_opened,
            extra=extras(reference_number=live.reference_number, form=self.form_code.system_code),
        )
        self._emit(SenderEvent(kind="session-opened", session_reference_number=live.reference_number))
        if self._closed:
            self._retire(live, "closing")

    def _retire(self, live: _Live, reason: str) -> None:
        """Send nothing more into ``live``; close it (in the background) once its in-flight sends have ended."""
        if live.retired:
            return
        live.retired = True
        live.reason = reason
        if self._current is live:
            self._current = None
        logger.info(
            "online session %s retired (%s) after %d invoices",
            live.reference_number,
            reason,
            live.sent,
            extra=extras(reference_number=live.reference_number, reason=reason),
        )
        self._emit(SenderEvent(kind="session-retired", session_reference_number=live.reference_number, reason=reason))
        if live.inflight == 0:
            live.drained.set()
        closer = asyncio.create_task(self._close_session(live), name=f"ksef-online-close-{live.reference_number}")
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    def _done_sending(self, live: _Live) -> None:
        live.inflight -= 1
        live.last_used = self._clock()
        if live.inflight == 0 and live.retired:
            live.drained.set()

    async def _close_session(self, live: _Live) -> None:
        """Close ``live`` after its sends ended, wait for KSeF to process it, keep its status and UPO."""
        await live.drained.wait()
        ref = live.reference_number
        closed_by_ksef = live.reason in {str(code) for code in REOPEN_CODES}
        if not closed_by_ksef:
            try:
                await self.client.online.close(ref)
            except ApiError as exc:
                logger.warning("closing online session %s failed: %s", ref, exc, extra=extras(reference_number=ref))
            except KsefError as exc:  # ambiguous or unreachable: the status poll below tells
                logger.warning("closing online session %s: %s", ref, exc, extra=extras(reference_number=ref))
        outcome = SessionOutcome(
            reference_number=ref,
            form_code=self.form_code.system_code,
            status_code=None,
            description="not processed in time",
            unavailable=live.reason == "21184",
        )
        try:
            status = await self.client.sessions.wait_until_processed(ref, max_wait=self.upo_timeout)
        except (DeadlineExceededError, KsefError) as exc:
            outcome = attrs.evolve(outcome, description=str(exc))
        else:
            pages: list[bytes] = []
            if self.download_upo and status.upo is not None and status.status.code not in SESSION_PENDING_CODES:
                try:
                    pages = [await self.client.sessions.download_upo(page.download_url) for page in status.upo.pages]
                except KsefError as exc:
                    logger.warning("UPO of session %s: %s", ref, exc, extra=extras(reference_number=ref))
            outcome = attrs.evolve(
                outcome,
                status_code=status.status.code,
                description=status.status.description,
                upo=tuple(pages),
                parsed_upo=tuple(parse_upo(page) for page in pages),
            )
            await self._reconcile(live)
        self.sessions.append(outcome)
        logger.info(
            "online session %s closed: status %s, %d invoices, %d UPO pages",
            ref,
            outcome.status_code,
            live.sent,
            len(outcome.upo),
            extra=extras(reference_number=ref, status=outcome.status_code),
        )
        self._emit(SenderEvent(kind="session-closed", session_reference_number=ref, session=outcome))

    async def _reconcile(self, live: _Live) -> None:
        """Settle the ambiguous sends of ``live`` from the session's invoice list (matched by hash)."""
        pending = {job.invoice.sha256: job for job in live.ambiguous}
        if not pending:
            return
        async for status in self.client.sessions.invoices(live.reference_number):
            job = pending.pop(base64.b64encode(status.invoice_hash).decode(), None)
            if job is not None:
                job.outcome = _outcome_from_status(job.name, live.reference_number, status)
                self._record("invoice-outcome", job, live.reference_number)
        for job in pending.values():
            job.outcome = attrs.evolve(job.outcome, description="not received by KSeF (absent from the session)")
            self._record("invoice-outcome", job, live.reference_number)

    async def _watch_idle(self) -> None:
        """Retire the current session once it has been idle for ``idle_timeout`` seconds."""
        assert self.idle_timeout is not None
        while True:
            live = self._current
            if live is None or live.retired:
                await asyncio.sleep(min(self.idle_timeout, 1.0))
                continue
            idle_for = self._clock() - live.last_used
            if live.inflight == 0 and idle_for >= self.idle_timeout:
                self._retire(live, "idle")
                continue
            await asyncio.sleep(max(0.05, min(self.idle_timeout - idle_for, self.idle_timeout, 1.0)))

    # -- events --------------------------------------------------------------------------------------------------

    def _record(self, kind: str, job: _Job, session_ref: str) -> None:
        self.outcomes.append(job.outcome)
        self._emit(
            SenderEvent(kind=kind, session_reference_number=session_ref, outcome=job.outcome, cancelled=job.cancelled)
        )

    def _emit(self, event: SenderEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # the application's callback must never break sending
            logger.warning("the OnlineSender on_event callback raised on %s", event.kind, exc_info=True)

    # -- closing -------------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Wait for the submits in flight, close the open session and collect every session's UPO.

        Cancellation: the closing runs shielded: cancelling `close` (or the ``async with`` exit) stops waiting,
        but the sessions are still closed and their UPOs collected in the background.
        """
        if self._closed:
            return
        self._closed = True
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
        await asyncio.shield(self._close_all())

    async def _close_all(self) -> None:
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)
        if self._opener is not None:
            await asyncio.gather(self._opener, return_exceptions=True)
        live = self._current
        if live is not None:
            self._retire(live, "closing")
        while self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a background task's exception as retrieved (its waiters got it; none may be left) and log it."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.info("%s ended with %s: %s", task.get_name(), type(error).__name__, error)
