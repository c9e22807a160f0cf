"""The batch coordinator: prepare -> open -> upload parts -> close -> poll -> results -> UPO, resumable at any point.

`BatchSender` owns the state of one batch send (the plan, in memory and in ``<state_dir>/plan.json``) and every
failure clean-up. Each session runs its own lifecycle in a task; sessions overlap, and all part uploads share one
limit (``concurrency``). A session is opened and uploaded as soon as its parts are spooled, while the next one is
still being prepared; it is closed only after preparation has finished and the plan recording its reference
number is on disk.

What is "sent": nothing, until a session's parts are uploaded *and* it is closed. A session that is opened and
never closed expires at KSeF (status 440) and none of its invoices is processed. That is what makes every crash
point safe:

================================  ============================================================================
crash (or kill) ...               ``resume`` does
================================  ============================================================================
during prepare                    nothing to resume (no plan is written until prepare ends); sessions opened
                                  meanwhile were never closed and expire: nothing was sent. Run ``send`` again.
before open                       opens the session (state ``prepared``).
after open, before the plan       finds the reference in ``sNNN-upload.json``; adopts the session if it is
records it                        still open (status 100) and in its window, else opens a new one (the old one
                                  expires unsent).
mid-upload / before close         asks the status: 100 in the window -> uploads the parts not acknowledged, then
                                  closes; window passed or 440 -> a new session with the same parts.
close sent, answer lost           asks the status: 100 -> closes again; 150/200/4xx -> it is closed.
after close, before results       polls to a final status, fetches the results, saves the UPO.
================================  ============================================================================

The decisions of this table are `ksef_async.core.resume_machine`'s (pure, tested for every state and event); the
engine asks KSeF, records the answers and carries them out. Every KSeF call goes through the client's typed
resources (`BatchClient`).

A new session for the same invoices reuses the prepared parts and their ``encryption`` object: the plaintext,
key and IV are identical, so nothing new is revealed, and no invoice can be processed twice because the old
session never reached processing. Only a session whose final status is 440 (cancelled before processing) or
that was never closed is re-sent; every other outcome is final. No invoice is sent twice unless KSeF lost it.

Memory: the prepare stage is bounded by the pipeline (about ``part buffer + zip window``, independent of the batch
size; see `ksef_async.batch.prepare`); each part in flight streams its spool file in 64 KiB reads, so uploads
add about ``concurrency x 128 KiB``; the plan holds about 400 bytes per invoice. Peak ~= pipeline + concurrency
x 128 KiB + 400 B x invoices.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final, Protocol, TypeVar

import anyio
import anyio.to_thread
import attrs
from anyio.abc import TaskGroup, TaskStatus

from ksef_async._logging import extras, get_logger
from ksef_async._private_files import private_dir, write_private_in
from ksef_async.batch._telemetry import BatchTelemetry
from ksef_async.batch.events import (
    BatchEvent,
    EventSink,
    InvoicesValidated,
    OutageWaiting,
    ResultsFetched,
    SessionPrepared,
    SessionStatusChanged,
    StageFinished,
    UpoSaved,
)
from ksef_async.batch.inputs import Inputs
from ksef_async.batch.prepare import OnInvalid, load_plan, prepare_batch, save_plan
from ksef_async.batch.reconcile import BatchReport, build_report, match_results
from ksef_async.batch.resume import (
    UploadRecord,
    delete_upload_record,
    read_upload_record,
    write_upload_record,
)
from ksef_async.batch.upload import PartRequest, PartUploader, UploadWindowClosedError, upload_part
from ksef_async.core import resume_machine as rm
from ksef_async.core.batch_limits import MAX_PART_PLAIN_SIZE, part_size_validator
from ksef_async.core.codes import ExceptionCode, SessionStatus
from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC
from ksef_async.core.plan import (
    BatchPlan,
    InvoiceOutcome,
    InvoicesJsonMemo,
    OutcomeStatus,
    SessionLimits,
    SessionPlan,
    SessionState,
)
from ksef_async.core.polling import Backoff
from ksef_async.core.safepath import checked_reference_number
from ksef_async.core.system_warnings import SystemWarningLog
from ksef_async.core.validators import at_least_one, positive
from ksef_async.errors import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    DeadlineExceededError,
    KsefError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    SessionFailedError,
    TransportError,
)
from ksef_async.models import OpenBatchSessionRequest, PartUploadRequest, SessionStatusResponse
from ksef_async.models.converter import structure, unstructure
from ksef_async.outage import OutageGuard, OutageNotice, guarded
from ksef_async.resources.batch import BatchResource
from ksef_async.resources.limits import LimitsResource
from ksef_async.resources.security import SecurityResource
from ksef_async.resources.sessions import SessionsResource

__all__ = ["PART_WINDOW", "BatchClient", "BatchSender", "SendConfig"]

T = TypeVar("T")

logger = get_logger("batch")

PART_WINDOW: Final = dt.timedelta(minutes=20)
"""Upload time per declared part: a session with N parts may upload each part for N x 20 min after the open."""
_OPEN: Final = SessionStatus.OPEN
_PROCESSING: Final = SessionStatus.PROCESSING
_OK: Final = SessionStatus.PROCESSED
_CANCELLED: Final = SessionStatus.CANCELLED  # "upload time exceeded" or "no invoices": nothing was processed
_NOT_FINAL: Final = rm.PENDING_CODES
_PAGE_SIZE: Final = 1000  # the spec's maximum for the session invoice lists: fewest calls (rate group sessionMisc)
_PART_MISSING: Final = ExceptionCode.EMPTY_PACKAGE
_WINDOW_EXCEEDED: Final = ExceptionCode.UPLOAD_WINDOW_EXCEEDED
_TRANSIENT: Final = (TransportError, ServerError, RateLimitedError)


@attrs.frozen
class SendConfig:
    """How a batch is sent. Memory ~= pipeline buffers + ``concurrency`` x 128 KiB + 400 B x invoices.

    Attributes:
        concurrency: Parts uploaded at once, over all sessions (default 4). Give the storage connection pool
            (`ksef_async.client.ClientConfig.storage_connections`) at least this many connections.
        part_size: Largest plaintext part in bytes (16 .. 99,999,984; default the maximum). Smaller parts upload
            one archive over several connections, and make a retried part cheaper.
        validate: Preflight and XSD validation before anything is sent (default True).
        on_invalid: ``"stop"`` at the first invalid invoice (default; nothing is sent) or ``"skip"`` it and
            report it.
        workers: Validation workers: processes when validating, threads otherwise (default: CPU count, at most 8).
        use_context_limits: Read ``GET /limits/context`` to split sessions by the context's own limits.
        part_backoff: Waits between attempts of one part (default 0.5 s doubling to 30 s), within its window.
        open_backoff: Waits between attempts to open a session after an unclear answer (an unrecorded open just
            expires unsent, so retrying is safe).
        open_attempts: Attempts to open one session (default 5).
        status_backoff: Waits between status polls (default 0.5 s growing by 1.5x to 10 s).
        close_attempts: Attempts to close a session whose status still says 100 (default 5).
        process_timeout: Seconds to wait for a closed session to reach a final status (default 4 h).
        max_reopens: New sessions tried for the same parts after a window passed or a 440 (default 2).
        upo_dir: Where session UPO pages are saved (default ``<state_dir>/upo``).
        download_upo: Whether to download the session UPO (default True).
        keep_spool: Keep the part files of a finished session (default False: deleted once it is done).
        offline_mode: Open every session with ``offlineMode`` true (the invoices were issued in an offline mode,
            ``OpenBatchSessionRequest.offlineMode``, docs ``tryby-offline.md``); recorded per session in the plan,
            so `BatchSender.resume` keeps it.
    """

    concurrency: int = attrs.field(default=4, validator=at_least_one)
    part_size: int = attrs.field(default=MAX_PART_PLAIN_SIZE, validator=part_size_validator)
    validate: bool = True
    on_invalid: OnInvalid = attrs.field(default="stop", validator=attrs.validators.in_(("stop", "skip")))
    workers: int | None = None
    use_context_limits: bool = True
    part_backoff: Backoff = attrs.field(factory=lambda: Backoff(initial=0.5, factor=2.0, maximum=30.0))
    open_backoff: Backoff = attrs.field(factory=lambda: Backoff(initial=1.0, factor=2.0, maximum=30.0))
    open_attempts: int = attrs.field(default=5, validator=at_least_one)
    status_backoff: Backoff = attrs.field(factory=lambda: Backoff(initial=0.5, factor=1.5, maximum=10.0))
    close_attempts: int = attrs.field(default=5, validator=at_least_one)
    process_timeout: float = attrs.field(default=4 * 3600.0, validator=positive)
    max_reopens: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    upo_dir: Path | None = None
    download_upo: bool = True
    keep_spool: bool = False
    offline_mode: bool = False


class BatchClient(Protocol):
    """What the batch engine uses of a client: its typed resources (`ksef_async.client.KsefClient` is one).

    Every KSeF call of the engine goes through these, so responses are structured (and a malformed one raises
    `ksef_async.errors.ResponseFormatError`) the same way as on every other path.
    """

    @property
    def batch(self) -> BatchResource:
        """Open and close batch sessions, upload parts."""
        ...

    @property
    def sessions(self) -> SessionsResource:
        """Session status, per-invoice results, UPO."""
        ...

    @property
    def security(self) -> SecurityResource:
        """The MF public keys (cached per client)."""
        ...

    @property
    def limits(self) -> LimitsResource:
        """The context's session limits."""
        ...

    @property
    def system_warnings(self) -> SystemWarningLog:
        """Every ``X-System-Warning`` the client received (the batch report lists what arrives during a run)."""
        ...


class _GuardedUploads:
    """Part uploads that wait out an announced outage after a failure (never repeated here: the part loop retries)."""

    def __init__(self, batch: BatchResource, guard: OutageGuard) -> None:
        self._batch = batch
        self._guard = guard

    async def upload_part(self, request: PartUploadRequest, body: bytes | BinaryIO, size: int) -> int:
        return await self._guard.call(lambda: self._batch.upload_part(request, body, size), retry=False)


class _Restart(Exception):  # noqa: N818 - internal signal
    """The session cannot go on (window passed, cancelled before processing): re-send its parts in a new one."""


class _Stages:
    """Wall time per stage: the length of the union of its intervals over all sessions (sessions overlap)."""

    def __init__(self, clock: Callable[[], float], emit: EventSink) -> None:
        self._clock = clock
        self._emit = emit
        self.spans: dict[str, list[tuple[float, float]]] = {}

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            self.spans.setdefault(stage, []).append((start, self._clock()))
            self._emit(StageFinished(stage, self.seconds()[stage]))

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for stage, spans in self.spans.items():
            total, reach = 0.0, float("-inf")
            for start, end in sorted(spans):
                if end > reach:
                    total += end - max(start, reach)
                    reach = end
            out[stage] = round(total, 6)
        return out


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BatchSender:
    """Send invoices by batch, or finish a send from its state directory (`resume`).

    Args:
        client: A logged-in client (`ksef_async.client.KsefClient`; its storage pool should match the upload
            concurrency); every KSeF call goes through its typed resources.
        state_dir: The state directory (plan, spool, upload records); for `send` it must be new or empty.
        config: Tunables.
        on_event: Receives every `ksef_async.batch.events` event (on the event loop; keep it quick).
        now: Aware UTC wall clock (upload windows).
        monotonic: Monotonic clock (stage timings, polling deadlines).
        sleep: Async sleep (tests inject a fast one).
        outage: Consult the status service after API failures and wait out announced outages
            (`ksef_async.outage.OutageGuard`); the windows seen go into the report with their offline deadline.
        features: ``X-KSeF-Feature`` values for the sessions it opens, added to the client's
            ``ClientConfig.features`` (e.g. ``subject-identifier-validation``).
    """

    def __init__(
        self,
        client: BatchClient,
        state_dir: str | Path,
        config: SendConfig | None = None,
        *,
        on_event: EventSink | None = None,
        now: Callable[[], dt.datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        outage: OutageGuard | None = None,
        features: Iterable[str] | None = None,
    ) -> None:
        self.client = client
        self._features = tuple(features or ())
        self._uploader: PartUploader = client.batch if outage is None else _GuardedUploads(client.batch, outage)
        self._outage = outage
        if outage is not None and outage.on_notice is None:
            outage.on_notice = self._on_outage
        self.state_dir = Path(state_dir)
        self.config = config or SendConfig()
        self._on_event = on_event
        self._now = now
        self._monotonic = monotonic
        self._sleep = sleep
        self._telemetry = BatchTelemetry(monotonic)  # OpenTelemetry (extra `otel`): a no-op without it
        self._stages = _Stages(monotonic, self._emit)
        self._base: BatchPlan | None = None
        self._sessions: dict[int, SessionPlan] = {}
        self._records: dict[int, UploadRecord] = {}
        self._upo_files: dict[int, list[str]] = {}
        self._persist = False
        self._prepared = anyio.Event()
        self._save_lock = anyio.Lock()
        self._json_memo = InvoicesJsonMemo()  # the invoice lists serialised by the last plan write
        self._version = 0
        self._saved = 0
        self._slots = anyio.CapacityLimiter(self.config.concurrency)
        self._resuming = False
        # Warnings KSeF sends while this sender exists go into its report.
        self._warnings = client.system_warnings.recorder()

    def __repr__(self) -> str:
        return f"BatchSender(state_dir={str(self.state_dir)!r})"

    # -- public ---------------------------------------------------------------------------------------------------

    @property
    def plan(self) -> BatchPlan | None:
        """The plan as it stands now (``None`` before preparation ends)."""
        if self._base is None:
            return None
        return attrs.evolve(self._base, sessions=tuple(self._sessions[i] for i in sorted(self._sessions)))

    async def send(self, inputs: Inputs) -> BatchReport:
        """Validate, prepare and send ``inputs``; return the report once every session is final.

        Raises:
            InvoiceError: ``on_invalid="stop"`` and an invoice is invalid (nothing was sent), or no input is valid.
            ConfigurationError: Bad options or an unusable state directory.
        """
        # Long: one task group owns preparation and the session drivers, so a failed prepare stops the drivers
        # (and waits for them) before it deletes the parts they upload; splitting it would scatter that handover.
        cfg = self.config
        limits = await self._session_limits()
        key = await self._call(lambda: self.client.security.public_key(KEY_USAGE_SYMMETRIC))
        failure: Exception | None = None
        all_started = anyio.Event()
        drivers_stopped = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                # The sessions run in their own group, so a failed prepare can stop them (and wait) before it
                # deletes the parts they upload.
                drivers: TaskGroup = await tg.start(self._run_drivers, all_started, drivers_stopped)

                def on_session(session: SessionPlan) -> None:
                    session = attrs.evolve(session, offline_mode=cfg.offline_mode)
                    self._sessions[session.index] = session
                    self._emit(
                        SessionPrepared(
                            session.index, len(session.invoices), len(session.parts), sum(p.size for p in session.parts)
                        )
                    )
                    drivers.start_soon(self._drive, session.index)

                try:
                    with self._stages.timed("prepare"):
                        plan = await prepare_batch(
                            inputs,
                            public_key=key,
                            state_dir=self.state_dir,
                            part_size=cfg.part_size,
                            validate=cfg.validate,
                            on_invalid=cfg.on_invalid,
                            limits=limits,
                            workers=cfg.workers,
                            on_session=on_session,
                            on_abort=functools.partial(self._stop_drivers, drivers, drivers_stopped),
                        )
                except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                    failure = exc
                    tg.cancel_scope.cancel()
                else:
                    all_started.set()
                    self._base = plan
                    self._persist = True
                    await self._save()
                    self._emit(
                        InvoicesValidated(
                            plan.invoice_count,
                            len(plan.skipped),
                            sum(i.size for s in plan.sessions for i in s.invoices),
                        )
                    )
                    self._prepared.set()
        finally:
            if failure is not None or self._base is None:
                # Nothing is resumable: drop the signed URLs of sessions opened meanwhile (they expire unsent).
                for index in list(self._sessions):
                    delete_upload_record(self.state_dir, index)
            else:
                await self._final_save()
        if failure is not None:
            raise failure
        return self.report()

    async def _session_limits(self) -> SessionLimits:
        """The limits that split the batch: KSeF's fixed ones, lowered by the context's (``GET /limits/context``)."""
        part_size = self.config.part_size
        if not self.config.use_context_limits:
            return SessionLimits(part_size=part_size)
        try:
            context = await self._call(self.client.limits.context)
        except ApiError as exc:
            # KSeF's fixed limits still split the batch safely; the context's may only be lower for sizes.
            logger.warning("GET /limits/context failed; using KSeF's fixed limits", extra=extras(status=exc.status))
            return SessionLimits(part_size=part_size)
        return SessionLimits.from_context(unstructure(context.batch_session), part_size=part_size)

    async def resume(self) -> BatchReport:
        """Finish the send recorded in the state directory; return the report.

        Raises:
            ConfigurationError: The directory holds no plan (preparation never finished: nothing was sent).
        """
        if not (self.state_dir / "plan.json").exists():
            msg = (
                f"{self.state_dir} holds no plan: preparation never finished, so nothing was sent; "
                "run 'ksef-async send' again with a new state directory"
            )
            raise ConfigurationError(msg)
        plan = await anyio.to_thread.run_sync(load_plan, self.state_dir)
        self._base = plan
        self._sessions = {s.index: s for s in plan.sessions}
        self._persist = True
        self._resuming = True
        self._prepared.set()
        # Progress from the first step: the totals and where each session stands, before any API call.
        for session in plan.sessions:
            self._emit(
                SessionPrepared(
                    session.index, len(session.invoices), len(session.parts), sum(p.size for p in session.parts)
                )
            )
        self._emit(
            InvoicesValidated(
                plan.invoice_count, len(plan.skipped), sum(i.size for s in plan.sessions for i in s.invoices)
            )
        )
        for session in plan.sessions:
            self._emit(
                SessionStatusChanged(session.index, session.state.value, session.reference_number, session.status_code)
            )
        logger.info(
            "resuming batch in %s: %d sessions, %d invoices",
            self.state_dir,
            len(plan.sessions),
            plan.invoice_count,
            extra=extras(sessions=len(plan.sessions), invoices=plan.invoice_count),
        )
        try:
            async with anyio.create_task_group() as tg:
                for index in sorted(self._sessions):
                    if rm.entry(self._recorded(index), resuming=True) is not rm.Action.SKIP:
                        tg.start_soon(self._drive, index)
        finally:
            await self._final_save()
        return self.report()

    def report(self) -> BatchReport:
        """The report of the plan as it stands."""
        plan = self.plan
        if plan is None:
            msg = "no plan yet: preparation has not finished"
            raise ConfigurationError(msg)
        return build_report(
            plan,
            upo_files=self._upo_files,
            timings=self._stages.seconds(),
            state_dir=str(self.state_dir),
            finished=self._now(),
            system_warnings=self._warnings.tallies(),
            system_warning_count=self._warnings.total,
            outages=() if self._outage is None else tuple(self._outage.report()),
        )

    # -- plumbing -------------------------------------------------------------------------------------------------

    @staticmethod
    async def _run_drivers(
        all_started: anyio.Event,
        stopped: anyio.Event,
        *,
        task_status: TaskStatus[TaskGroup] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Host the session drivers of `send` until all were started and have ended; then set ``stopped``."""
        try:
            async with anyio.create_task_group() as drivers:
                task_status.started(drivers)
                await all_started.wait()
        finally:
            stopped.set()

    @staticmethod
    async def _stop_drivers(drivers: TaskGroup, stopped: anyio.Event) -> None:
        """Cancel the session drivers of `send` and wait until none runs (none reads a spool file any more)."""
        drivers.cancel_scope.cancel()
        await stopped.wait()

    async def _call(self, fn: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """Make one KSeF call; with an outage guard, wait out an announced outage after a failure (see `guarded`)."""
        return await guarded(self._outage, fn, retry=retry)

    def _on_outage(self, notice: OutageNotice) -> None:
        since = None if notice.since is None else notice.since.isoformat()
        self._emit(
            OutageWaiting(notice.state.value, since, notice.waited, notice.finished, notice.gave_up, notice.message)
        )

    def _emit(self, event: BatchEvent) -> None:
        self._telemetry(event)
        if self._on_event is not None:
            self._on_event(event)

    def _set(self, session: SessionPlan, *, announce: bool = False) -> SessionPlan:
        self._sessions[session.index] = session
        if announce:
            self._emit(
                SessionStatusChanged(
                    session.index,
                    session.state.value,
                    session.reference_number,
                    session.status_code,
                    session.status_description,
                )
            )
        return session

    async def _save(self) -> None:
        """Write the plan; concurrent callers share one write (each returns once its change is on disk)."""
        if not self._persist:
            return
        self._version += 1
        target = self._version
        async with self._save_lock:
            if self._saved >= target:
                return
            version = self._version
            plan = self.plan
            assert plan is not None  # _persist implies a base plan
            await anyio.to_thread.run_sync(save_plan, self.state_dir, plan, self._json_memo)
            self._saved = version

    async def _final_save(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._save()

    def _recorded(self, index: int) -> rm.Recorded:
        """The plan's record of session ``index`` as the resume decisions read it (`ksef_async.core.resume_machine`)."""
        session = self._sessions[index]
        return rm.Recorded(
            session.state,
            session.status_code,
            session.reference_number is not None,
            any(i.outcome is None for i in session.invoices),
        )

    # -- one session's lifecycle -----------------------------------------------------------------------------------

    async def _drive(self, index: int) -> None:
        """Run session ``index`` from its current state to a final one; failures are recorded, not raised."""
        reopens = 0
        while True:
            try:
                await self._advance(index)
            except _Restart as why:
                if reopens >= self.config.max_reopens:
                    self._fail(index, f"gave up after {reopens + 1} sessions: {why}")
                    await self._save()
                    return
                reopens += 1
                logger.warning("re-sending a session's parts in a new session", extra=extras(session=index))
                await self._restart(index)
            except KsefError as exc:
                code = exc.status if isinstance(exc, ApiError) else None
                # Recorded in the plan and the report: an expected outcome, no traceback.
                logger.warning(
                    "batch session failed", extra=extras(session=index, error=type(exc).__name__, status=code)
                )
                self._fail(index, f"{type(exc).__name__}: {exc}")
                await self._save()
                return
            else:
                return

    def _fail(self, index: int, description: str) -> None:
        # status_code stays KSeF's session status (never an HTTP status): resume decides by it.
        session = self._sessions[index]
        self._set(attrs.evolve(session, state=SessionState.FAILED, status_description=description), announce=True)

    async def _advance(self, index: int) -> None:
        """Drive session ``index`` once: the resume machine says where to start; KSeF's answers say where to go."""
        action = rm.entry(self._recorded(index), resuming=self._resuming)
        if action is rm.Action.SKIP:
            return
        if action is rm.Action.REOPEN:
            raise _Restart("the session was cancelled before processing (440)")
        if action is rm.Action.RESET:
            await self._restart(index)  # it never got a session at KSeF: try again
            action = rm.entry(self._recorded(index), resuming=self._resuming)
        action = await self._probe(index, action)
        if action is rm.Action.OPEN:
            await self._open(index)
            action = rm.Action.UPLOAD
        if action is rm.Action.UPLOAD:
            await self._upload(index)
            await self._prepared.wait()
            await self._close(index)
        code, status = await self._await_final(index)
        if code == _CANCELLED:
            raise _Restart(f"KSeF cancelled the session (440: {self._sessions[index].status_description})")
        await self._results(index, code)
        if code == _OK and self.config.download_upo:
            await self._upo(index, status)
        session = self._sessions[index]
        final = SessionState.DONE if code == _OK else SessionState.FAILED
        self._set(attrs.evolve(session, state=final), announce=True)
        await self._save()
        if final is SessionState.DONE and not self.config.keep_spool:
            await anyio.to_thread.run_sync(self._delete_spool, session)

    async def _probe(self, index: int, action: rm.Action) -> rm.Action:
        """Find out what the plan cannot tell (an unrecorded open, a close that went through); return the action.

        The questions and what each answer means are `ksef_async.core.resume_machine.transition`'s; this only
        asks them and records the answers.
        """
        probe = rm.entry_probe(action)
        if probe is rm.Probe.CLOSE and self._sessions[index].state is SessionState.FAILED:
            # It failed on our side (upload, close or polling); resume asks KSeF where it stands first.
            self._set(attrs.evolve(self._sessions[index], state=SessionState.UPLOADING))
        record: UploadRecord | None = None
        observation: rm.Observation | None = None
        while probe is not None:
            asked = probe
            if probe is rm.Probe.RECORD:
                record = await anyio.to_thread.run_sync(read_upload_record, self.state_dir, index)
                window_open = record is not None and self._now() < record.upload_deadline
                observation = rm.observe_record(present=record is not None, window_open=window_open)
            elif probe is rm.Probe.ADOPTED:
                assert record is not None
                observation = await self._observe_adopted(index, record)
            else:
                await self._status(index)  # a 404 here fails the session (reported), as any KSeF error does
                deadline = self._sessions[index].upload_deadline
                window_open = deadline is None or self._now() < deadline
                observation = rm.observe_status(self._code(index), window_open=window_open)
            action, probe = rm.transition(asked, observation)
        await self._apply(index, action, record, observation)
        return action

    async def _observe_adopted(self, index: int, record: UploadRecord) -> rm.Observation:
        """Ask KSeF the status of the session an upload record names (opened before the plan recorded it)."""
        self._set(attrs.evolve(self._sessions[index], reference_number=record.reference_number))
        try:
            await self._status(index)
        except NotFoundError:
            return rm.observe_status(None, window_open=False)
        return rm.observe_status(self._code(index), window_open=self._now() < record.upload_deadline)

    async def _apply(
        self, index: int, action: rm.Action, record: UploadRecord | None, observation: rm.Observation | None
    ) -> None:
        """Record what the probes decided: adopt or drop an unrecorded open, mark a closed session, or re-send."""
        session = self._sessions[index]
        if action is rm.Action.OPEN and record is not None:
            # It expires unsent at KSeF (never closed): open a new one.
            self._set(attrs.evolve(session, reference_number=None, status_code=None))
            await anyio.to_thread.run_sync(delete_upload_record, self.state_dir, index)
        elif action is rm.Action.UPLOAD and record is not None:
            self._records[index] = record
            self._set(
                attrs.evolve(session, state=SessionState.OPENED, upload_deadline=record.upload_deadline),
                announce=True,
            )
            await self._save()
        elif action is rm.Action.AWAIT:
            self._set(attrs.evolve(session, state=SessionState.CLOSED), announce=True)
            await self._save()
        elif action is rm.Action.REOPEN:
            if observation is rm.Observation.CANCELLED:
                raise _Restart("KSeF cancelled the session before it was closed (440)")
            raise _Restart("the upload window passed before the session was closed")

    def _delete_spool(self, session: SessionPlan) -> None:
        for part in session.parts:
            (self.state_dir / part.file).unlink(missing_ok=True)

    async def _restart(self, index: int) -> None:
        """Forget the session at KSeF (it expires unsent) and put its parts back to ``prepared``."""
        session = self._sessions[index]
        for part in session.parts:
            if not (self.state_dir / part.file).exists():
                msg = (
                    f"session {index}: spool file {part.file} is gone, so its invoices cannot be re-sent from this "
                    "state directory; send the invoices without a KSeF number again"
                )
                raise ConfigurationError(msg)
        self._records.pop(index, None)
        await anyio.to_thread.run_sync(delete_upload_record, self.state_dir, index)
        self._set(
            attrs.evolve(
                session,
                state=SessionState.PREPARED,
                reference_number=None,
                upload_deadline=None,
                status_code=None,
                status_description=None,
                parts=tuple(attrs.evolve(p, uploaded=False) for p in session.parts),
                invoices=tuple(attrs.evolve(i, outcome=None) for i in session.invoices),
            ),
            announce=True,
        )
        await self._save()

    async def _status(self, index: int) -> SessionStatusResponse:
        """``GET /sessions/{ref}``; record and announce a changed code."""
        reference = self._sessions[index].reference_number
        assert reference is not None
        body = await self._call(lambda: self.client.sessions.status(reference))
        session = self._sessions[index]
        code, description = body.status.code, body.status.description
        if code != session.status_code:
            state = SessionState.PROCESSING if code == _PROCESSING else session.state
            self._set(
                attrs.evolve(session, status_code=code, status_description=description, state=state), announce=True
            )
        return body

    def _code(self, index: int) -> int | None:
        return self._sessions[index].status_code

    async def _open(self, index: int) -> None:
        session = self._sessions[index]
        if session.encryption is None:
            msg = f"session {index} has no encryption record: it was never prepared"
            raise ConfigurationError(msg)
        request = structure(
            session.open_request(offline_mode=session.offline_mode or self.config.offline_mode),
            OpenBatchSessionRequest,
        )
        with self._stages.timed("open"):
            attempt = 0
            while True:
                started = self._now()
                try:
                    answer = await self._call(lambda: self.client.batch.open_prepared(request, features=self._features))
                    break
                except _TRANSIENT as exc:
                    # An unanswered open may have created a session; it is never closed, so it expires unsent.
                    attempt += 1
                    if attempt >= self.config.open_attempts:
                        raise
                    logger.warning(
                        "opening a batch session failed, retrying",
                        extra=extras(session=index, error=type(exc).__name__, attempt=attempt),
                    )
                    await self._sleep(self.config.open_backoff.delay(attempt - 1))
        reference = answer.reference_number
        requests = tuple(PartRequest.from_model(r) for r in answer.part_upload_requests)
        record = UploadRecord(reference, started + PART_WINDOW * len(session.parts), requests)
        await anyio.to_thread.run_sync(write_upload_record, self.state_dir, index, record)
        self._records[index] = record
        self._set(
            attrs.evolve(
                session,
                state=SessionState.OPENED,
                reference_number=reference,
                upload_deadline=record.upload_deadline,
                status_code=_OPEN,
                status_description=None,
            ),
            announce=True,
        )
        await self._save()

    async def _record(self, index: int) -> UploadRecord:
        record = self._records.get(index)
        if record is None:
            record = await anyio.to_thread.run_sync(read_upload_record, self.state_dir, index)
            session = self._sessions[index]
            if record is None or record.reference_number != session.reference_number:
                # Without the signed URLs the parts cannot be uploaded to this session: use a new one.
                raise _Restart("the upload URLs of the session are not in the state directory")
            self._records[index] = record
        return record

    async def _upload(self, index: int) -> None:
        session = self._sessions[index]
        record = await self._record(index)
        assert session.upload_deadline is not None
        deadline = session.upload_deadline
        errors: list[Exception] = []
        if session.state is SessionState.OPENED:
            self._set(attrs.evolve(session, state=SessionState.UPLOADING), announce=True)

        async def one(ordinal: int, scope: anyio.CancelScope) -> None:
            part = next(p for p in self._sessions[index].parts if p.ordinal == ordinal)
            try:
                async with self._slots:
                    await upload_part(
                        self._uploader,
                        session=index,
                        request=record.request(ordinal),
                        path=self.state_dir / part.file,
                        size=part.size,
                        deadline=deadline,
                        now=self._now,
                        backoff=self.config.part_backoff,
                        emit=self._emit,
                        sleep=self._sleep,
                    )
            except KsefError as exc:
                errors.append(exc)
                scope.cancel()
                return
            current = self._sessions[index]
            parts = tuple(attrs.evolve(p, uploaded=True) if p.ordinal == ordinal else p for p in current.parts)
            self._set(attrs.evolve(current, parts=parts))
            await self._save()

        with self._stages.timed("upload"):
            async with anyio.create_task_group() as tg:
                for part in session.parts:
                    if not part.uploaded:
                        tg.start_soon(one, part.ordinal, tg.cancel_scope)
        if errors:
            first = errors[0]
            if isinstance(first, UploadWindowClosedError):
                raise _Restart(str(first)) from first
            raise first

    async def _close(self, index: int) -> None:
        """Close; on an unclear answer ask the status before anything is repeated."""
        reference = self._sessions[index].reference_number
        assert reference is not None
        with self._stages.timed("close"):
            for attempt in range(self.config.close_attempts):
                try:
                    await self._call(lambda: self.client.batch.close(reference), retry=False)
                    break
                except BadRequestError as exc:
                    if exc.has_code(_WINDOW_EXCEEDED):
                        raise _Restart("KSeF refused the close: the upload window passed (21208)") from exc
                    await self._status(index)
                    if self._code(index) != _OPEN:
                        break  # e.g. 21180: it is already closed
                    if exc.has_code(_PART_MISSING) and attempt + 1 < self.config.close_attempts:
                        # Acknowledged parts may take a moment to be seen (KSeF docs issue #264): wait and retry.
                        await self._sleep(self.config.status_backoff.delay(attempt))
                        continue
                    raise
                except _TRANSIENT as exc:
                    logger.warning(
                        "close got no clear answer, checking the session status",
                        extra=extras(session=index, error=type(exc).__name__, reference_number=reference),
                    )
                    await self._sleep(self.config.status_backoff.delay(attempt))
                    await self._status(index)
                    if self._code(index) != _OPEN:
                        break  # it was closed: never close twice
            else:
                raise SessionFailedError(
                    _OPEN,
                    f"still open after {self.config.close_attempts} close attempts",
                    reference_number=reference,
                )
        session = self._sessions[index]
        self._set(attrs.evolve(session, state=SessionState.CLOSED), announce=True)
        self._records.pop(index, None)
        await self._save()
        await anyio.to_thread.run_sync(delete_upload_record, self.state_dir, index)

    async def _await_final(self, index: int) -> tuple[int, SessionStatusResponse]:
        """Poll the status with back-off until it is final (not 100/150); return the code and the status body."""
        schedule_start = self._monotonic()
        deadline = schedule_start + self.config.process_timeout
        attempt = 0
        with self._stages.timed("process"):
            while True:
                body = await self._status(index)
                code = self._code(index)
                if code is not None and code not in _NOT_FINAL:
                    return code, body
                now = self._monotonic()
                if now >= deadline:
                    reference = self._sessions[index].reference_number
                    msg = f"session {reference}: not processed after {now - schedule_start:.0f} s"
                    raise DeadlineExceededError(msg)
                await self._sleep(min(self.config.status_backoff.delay(attempt), max(0.0, deadline - now)))
                attempt += 1

    async def _results(self, index: int, code: int) -> None:
        """Fetch every page of the per-invoice results and match them to the inputs."""
        reference = self._sessions[index].reference_number
        assert reference is not None
        with self._stages.timed("results"):
            attempt = 0
            while True:
                sessions = self.client.sessions
                items = [item async for item in sessions.invoices(reference, page_size=_PAGE_SIZE)]
                session, counts = match_results(self._sessions[index], items)
                if counts.pending:
                    failed = [item async for item in sessions.failed_invoices(reference, page_size=_PAGE_SIZE)]
                    session, counts = match_results(session, failed)
                self._set(session)
                if not counts.pending or attempt >= 5:  # noqa: PLR2004
                    break
                # Results may trail the session status for a moment.
                await self._sleep(self.config.status_backoff.delay(attempt))
                attempt += 1
            if counts.pending and code != _OK:
                # A session-level failure (405/415/430/435/445/500) without per-invoice entries: the session's
                # code is every remaining invoice's outcome.
                session = self._sessions[index]
                outcome = InvoiceOutcome(OutcomeStatus.REJECTED, None, code, session.status_description)
                session = attrs.evolve(
                    session,
                    invoices=tuple(i if i.outcome else attrs.evolve(i, outcome=outcome) for i in session.invoices),
                )
                self._set(session)
        self._emit(ResultsFetched(index, counts.accepted, counts.duplicates, counts.rejected, counts.pending))
        await self._save()

    async def _upo(self, index: int, status: SessionStatusResponse) -> None:
        """Download every session UPO page (hash-checked) into the UPO directory."""
        session = self._sessions[index]
        reference = session.reference_number
        assert reference is not None
        pages = () if status.upo is None else status.upo.pages
        directory = self.config.upo_dir or (self.state_dir / "upo")
        saved: list[str] = []
        with self._stages.timed("upo"):
            checked_reference_number(reference, source="batch session referenceNumber")
            await anyio.to_thread.run_sync(private_dir, directory)
            for number, page in enumerate(pages, start=1):
                sessions = self.client.sessions
                try:
                    data = await self._call(functools.partial(sessions.download_upo, page.download_url))
                except ApiError:
                    # an expired link: the API endpoint serves the same page
                    data = await self._call(functools.partial(sessions.upo, reference, page.reference_number))
                name = f"UPO-{reference}-{number}.xml"
                path = await anyio.to_thread.run_sync(write_private_in, directory, name, data)
                saved.append(str(path))
                self._emit(UpoSaved(index, str(path)))
        self._upo_files[index] = saved
