"""Prepare a batch send: validate invoices, group them into sessions, and spool encrypted parts plus the plan.

One pass over the inputs, in bounded memory. Invoice files are read, validated and compressed by workers, a few
batches ahead of the zip writer (the calling thread only lists them: the workers get paths, not bytes).

Validating runs in worker processes by default (``executor="auto"``): the Python work around each lxml call holds
the GIL, so threads serialise there (2 threads on 2 cores: ~1.7x one thread, processes ~1.95x). The processes run
`ksef_async.batch._worker_main` (`ksef_async.batch._procs`), not multiprocessing's spawn, so the caller needs no
``if __name__ == "__main__"`` guard; on Linux one started process forks them all, so their start-up (~0.1 s CPU) is
paid once. A run of fewer than ``2 * workers`` batches of 64 invoices, which would not repay that start, stays in
threads. Without validation threads compress on every core (isal, zlib and hashlib release the GIL) and the
compressed entries need not cross a pipe.

Each invoice is compressed in the pool too (`deflate_entry`); each valid one then joins its session by its real
archive bytes (`SessionPacker`: one open session per form code, closed when the next invoice would break a limit)
and goes straight into that session's `ZipWriter` -> `ArchivePipeline` (split, encrypt, hash), whose ciphertext
lands in spool files. Only
ciphertext reaches the disk:

* ``<state_dir>/s{session:03d}-part-{ordinal:04d}.aes``: created with ``O_CREAT | O_EXCL`` and mode 0o600;
* ``<state_dir>/plan.json``: the `BatchPlan`, written atomically (temporary file, fsync, rename, fsync of the
  directory), mode 0o600. It never holds the AES key (see `ksef_async.core.plan`).

Invalid invoices (validation problems, a form batch sessions do not take, duplicates, size limits): with
``on_invalid="stop"`` (default) the first one raises `InvoiceError` and every spool file written so far is
deleted, so nothing that could be sent remains; with ``on_invalid="skip"`` they are left out and listed in
``BatchPlan.skipped``.

The sync core `prepare_batch_sync` runs in any worker thread; `prepare_batch` runs it off the event loop.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import itertools
import os
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
import attrs
from cryptography.hazmat.primitives.asymmetric import rsa

from ksef_async._private_files import write_private
from ksef_async.batch._procs import ProcessWorkers, WorkerFailedError, can_start_processes
from ksef_async.batch._worker import BATCH_FORMS, Description, Entry, Source, Unreadable, describe_batch
from ksef_async.batch.inputs import DuplicateCheck, InputItem, Inputs, PendingFile, iter_sources
from ksef_async.core.batch_limits import MAX_PART_PLAIN_SIZE, check_part_size
from ksef_async.core.crypto import MfPublicKey, SessionKey, b64
from ksef_async.core.pipeline import ArchivePipeline, PartInfo
from ksef_async.core.plan import (
    BatchPlan,
    EncryptionRecord,
    FormKey,
    InvoiceEntry,
    InvoicesJsonMemo,
    SessionLimits,
    SessionPacker,
    SessionPlan,
    entry_json,
)
from ksef_async.core.zipstream import DEFAULT_LEVEL, DeflatedEntry, ZipWriter
from ksef_async.errors import ConfigurationError, InvoiceError, InvoiceProblem

__all__ = [
    "BATCH_FORMS",
    "PLAN_FILE",
    "Executor",
    "OnInvalid",
    "PrepareStats",
    "load_plan",
    "prepare_batch",
    "prepare_batch_sync",
    "save_plan",
    "spool_name",
]

PLAN_FILE: Final = "plan.json"
OnInvalid = Literal["stop", "skip"]
Executor = Literal["auto", "thread", "process"]
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_THREAD_BATCH: Final = 8
_PROCESS_BATCH: Final = 64  # a process pays a pickling round trip per batch
_BATCH_BYTES: Final = 1 << 20  # bounds the read-ahead whatever the invoice size
_IN_FLIGHT: Final = 4  # batches per worker: fewer starved the workers (see `_described_in_threads`)
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def spool_name(session: int, ordinal: int) -> str:
    """The spool file name of part ``ordinal`` of session ``session``."""
    return f"s{session:03d}-part-{ordinal:04d}.aes"


@attrs.frozen
class PrepareStats:
    """What one prepare run did.

    Attributes:
        invoices: Invoices in the plan.
        bytes_in: Their total size (invoice XML bytes).
        archive_bytes: Plaintext archive bytes, all sessions.
        ciphertext_bytes: Bytes spooled to disk.
        sessions: Sessions in the plan.
        parts: Parts spooled.
        skipped: Inputs left out.
        seconds: Wall time.
    """

    invoices: int
    bytes_in: int
    archive_bytes: int
    ciphertext_bytes: int
    sessions: int
    parts: int
    skipped: int
    seconds: float

    @classmethod
    def of(cls, plan: BatchPlan, seconds: float) -> PrepareStats:
        """Summarise ``plan`` prepared in ``seconds``."""
        return cls(
            invoices=plan.invoice_count,
            bytes_in=sum(i.size for s in plan.sessions for i in s.invoices),
            archive_bytes=sum(s.file_size or 0 for s in plan.sessions),
            ciphertext_bytes=sum(p.size for s in plan.sessions for p in s.parts),
            sessions=len(plan.sessions),
            parts=sum(len(s.parts) for s in plan.sessions),
            skipped=len(plan.skipped),
            seconds=seconds,
        )

    @property
    def mb_per_s(self) -> float:
        """Input MB/s (SI megabytes of invoice XML per second)."""
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def save_plan(state_dir: str | os.PathLike[str], plan: BatchPlan, memo: InvoicesJsonMemo | None = None) -> Path:
    """Write ``plan`` to ``<state_dir>/plan.json`` atomically (temporary file, fsync, rename); return the path.

    ``memo`` keeps each session's serialised invoice list between writes (see `InvoicesJsonMemo`).
    """
    # One session at a time: the plan's JSON is never whole in memory.
    chunks = (chunk.encode() for chunk in plan.json_chunks(memo))
    return write_private(Path(state_dir) / PLAN_FILE, chunks, fsync=True, fsync_dir=True)


def load_plan(state_dir: str | os.PathLike[str]) -> BatchPlan:
    """Read ``<state_dir>/plan.json``.

    Raises:
        ConfigurationError: There is no plan there, or it cannot be read.
    """
    path = Path(state_dir) / PLAN_FILE
    try:
        text = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the plan: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc
    return BatchPlan.from_json(text)


class _Spool:
    """`PartSink` writing each part of one session to its own owner-only file."""

    def __init__(self, directory: Path, session: int, created: list[Path]) -> None:
        self._dir = directory
        self._session = session
        self._created = created
        self._fd: int | None = None
        self.files: list[str] = []

    def write_part(self, ordinal: int, data: memoryview) -> None:
        if self._fd is None:
            name = spool_name(self._session, ordinal)
            path = self._dir / name
            self._fd = os.open(path, _FILE_FLAGS, _FILE_MODE)
            self._created.append(path)
            self.files.append(name)
        _write_all(self._fd, data)

    def end_part(self, part: PartInfo) -> None:  # noqa: ARG002 - the protocol's signature
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _SessionWriter:
    """Zip -> split/encrypt/hash -> spool for one session."""

    def __init__(
        self, plan: SessionPlan, directory: Path, *, part_size: int, public_key: rsa.RSAPublicKey,
        key_id: str | None, level: int, created: list[Path],
    ) -> None:  # fmt: skip
        key = SessionKey.generate()  # a fresh key per session, as the docs recommend
        self.encryption = EncryptionRecord(b64(key.wrap(public_key)), b64(key.iv), key_id)
        self.spool = _Spool(directory, plan.index, created)
        self.pipeline = ArchivePipeline(key, self.spool, part_size=part_size)
        self.zip = ZipWriter(self.pipeline.write, level=level)

    def add(self, entry: DeflatedEntry) -> None:
        self.zip.add_deflated(entry)

    def finish(self, plan: SessionPlan) -> SessionPlan:
        self.zip.close()
        archive = self.pipeline.finish()
        return plan.prepared(archive, self.spool.files, self.encryption)


def _batches(items: Iterator[Source], max_count: int, max_bytes: int) -> Iterator[list[Source]]:
    batch: list[Source] = []
    size = 0
    for item in items:
        batch.append(item)
        size += item.size if isinstance(item, PendingFile) else len(item.data)
        if len(batch) >= max_count or size >= max_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _described(
    inputs: InputItem | Iterable[InputItem], validate: bool, level: int, workers: int, executor: Executor
) -> Generator[Description, None, None]:
    """Yield the invoices of ``inputs`` with their description, in input order.

    They are described by ``workers`` threads or processes (``executor``), or in this thread for one worker.
    """
    items = iter_sources(inputs)
    if workers <= 1:
        for batch in _batches(items, _THREAD_BATCH, _BATCH_BYTES):
            yield from _joined(describe_batch(batch, validate, level))
        return
    if executor == "auto":
        executor = "process" if validate else "thread"
    if executor == "process" and can_start_processes():
        # Workers asked for a directory start before its walk (~6 ms per 1,000 files here), which overlaps their
        # start-up; a small run ends them unused.
        yield from _described_in_processes(items, validate, level, workers, early=_names_a_directory(inputs))
    else:
        yield from _described_in_threads(items, validate, level, workers)


def _described_in_threads(items: Iterator[Source], validate: bool, level: int, workers: int) -> Iterator[Description]:
    """Describe in a thread pool, with up to ``_IN_FLIGHT * workers`` batches in flight.

    Batches keep the per-task overhead (a queue hand-off) small; they are capped at 1 MB of invoices, so the
    read-ahead stays bounded whatever the invoice size. The calling thread only writes: when it also described
    batches whenever the pool lagged, the pool starved meanwhile (its workers idled ~45 % of a 1 GB run), and
    a window of 2 batches per worker starved it too (1 GB, 2 threads: 1.7 s against 2.0 s).
    """
    window: deque[cf.Future[list[Description | Unreadable]]] = deque()
    with cf.ThreadPoolExecutor(workers, thread_name_prefix="ksef-prepare") as pool:
        try:
            for batch in _batches(items, _THREAD_BATCH, _BATCH_BYTES):
                window.append(pool.submit(describe_batch, batch, validate, level))
                if len(window) >= _IN_FLIGHT * workers:
                    yield from _joined(window.popleft().result())
            while window:
                yield from _joined(window.popleft().result())
        finally:
            for pending in window:
                pending.cancel()


def _names_a_directory(inputs: InputItem | Iterable[InputItem]) -> bool:
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs if isinstance(inputs, (list, tuple)) else []
    return any(isinstance(p, (str, os.PathLike)) and os.path.isdir(p) for p in paths)  # noqa: PTH112 - str or PathLike


def _described_in_processes(
    items: Iterator[Source], validate: bool, level: int, workers: int, *, early: bool
) -> Iterator[Description]:
    """Describe in ``workers`` processes (`ProcessWorkers`), with up to `_IN_FLIGHT` batches in flight per process.

    A run of fewer than ``2 * workers`` batches does not pay for starting processes (~0.1 s CPU): threads
    describe it (processes started ``early`` are ended unused). If a process fails, or none can start, threads
    describe the rest.
    """
    procs = _start_workers(workers) if early else None
    try:
        batches = _batches(items, _PROCESS_BATCH, _BATCH_BYTES)
        first = list(itertools.islice(batches, 2 * workers))
        if len(first) >= 2 * workers and procs is None:
            procs = _start_workers(workers)
        if len(first) < 2 * workers or procs is None:
            if procs is not None:
                procs.close()
            yield from _described_in_threads(
                itertools.chain.from_iterable(itertools.chain(first, batches)), validate, level, workers
            )
            return
        yield from _through_workers(procs, itertools.chain(first, batches), validate, level)
    finally:
        if procs is not None:
            procs.close()


def _start_workers(workers: int) -> ProcessWorkers | None:
    try:
        return ProcessWorkers(workers)
    except WorkerFailedError:  # logged; threads do the work
        return None


def _through_workers(
    procs: ProcessWorkers, batches: Iterator[list[Source]], validate: bool, level: int
) -> Iterator[Description]:
    """Send batch ``j`` to worker ``j % n`` and read the answers back in ``j`` order (the input order)."""
    workers = len(procs)
    sent: deque[tuple[int, list[Source]]] = deque()  # (worker, batch) in input order, not received yet
    try:
        for index, batch in enumerate(batches):
            sent.append((index % workers, batch))
            procs.send(index % workers, batch, validate, level)
            if len(sent) >= _IN_FLIGHT * workers:
                results = procs.receive(sent[0][0])
                sent.popleft()
                yield from _joined(results)
        procs.finish()  # no more batches: each worker ends once its last answer is written
        while sent:
            results = procs.receive(sent[0][0])
            sent.popleft()
            yield from _joined(results)
    except WorkerFailedError:
        procs.close()
        rest = itertools.chain.from_iterable(itertools.chain((batch for _, batch in sent), batches))
        yield from _described_in_threads(rest, validate, level, workers)


def _joined(results: list[Description | Unreadable]) -> Iterator[Description]:
    for description in results:
        yield _checked(description)


def _checked(description: Description | Unreadable) -> Description:
    if isinstance(description, Unreadable):
        raise description.error()
    return description


_FORM_KEYS: Final = tuple(
    FormKey(form.form_code.system_code, form.form_code.schema_version, form.form_code.value) for form in BATCH_FORMS
)


def _entry(fields: Entry) -> InvoiceEntry:
    name, sha256, size, form, number, nip, attachment, source = fields
    return InvoiceEntry(name, sha256, size, _FORM_KEYS[form], number, nip, attachment, source)


def _default_workers() -> int:
    # Without validation the pool still has the deflate, CRC-32 and SHA-256 of every invoice to do, and isal,
    # zlib and hashlib release the GIL meanwhile: threads compress on every core.
    return max(1, min(8, os.cpu_count() or 1))


def _rsa_key(public_key: MfPublicKey | rsa.RSAPublicKey) -> tuple[rsa.RSAPublicKey, str | None]:
    key: object = public_key  # checked at run time: callers may pass anything
    if isinstance(key, MfPublicKey):
        return key.rsa_public_key(), key.public_key_id
    if isinstance(key, rsa.RSAPublicKey):
        return key, None
    msg = f"public_key must be an MfPublicKey or an RSA public key, got {type(key).__name__}"
    raise ConfigurationError(msg)


def _open_state_dir(state_dir: str | os.PathLike[str]) -> Path:
    directory = Path(state_dir)
    try:
        directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"{directory}: cannot create the state directory: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc
    if (directory / PLAN_FILE).exists():
        msg = f"{directory} already holds a batch plan: resume it, or choose an empty directory"
        raise ConfigurationError(msg)
    if any(directory.glob("*.aes")):
        # A prepare killed before it wrote its plan: the parts cannot be sent (nothing declares them).
        msg = f"{directory} holds part files but no plan (an interrupted prepare): delete them or use another directory"
        raise ConfigurationError(msg)
    return directory


def prepare_batch_sync(
    inputs: InputItem | Iterable[InputItem],
    *,
    public_key: MfPublicKey | rsa.RSAPublicKey,
    state_dir: str | os.PathLike[str],
    part_size: int = MAX_PART_PLAIN_SIZE,
    validate: bool = True,
    on_invalid: OnInvalid = "stop",
    limits: SessionLimits | None = None,
    workers: int | None = None,
    executor: Executor = "auto",
    level: int = DEFAULT_LEVEL,
    on_session: Callable[[SessionPlan], object] | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    check_cancelled: Callable[[], object] | None = None,
    on_abort: Callable[[], object] | None = None,
) -> BatchPlan:
    """Validate, zip, split, encrypt and spool ``inputs``; write and return the plan. Blocking: use a thread.

    Args:
        inputs: Paths (files, directories, globs), bytes, (name, bytes) pairs, or an iterable of them.
        public_key: The MF certificate with usage ``SymmetricKeyEncryption`` (its ``publicKeyId`` goes into the
            plan), or a bare RSA public key.
        state_dir: Where the spool and plan go; created (mode 0o700) if missing; must not hold a batch already.
        part_size: Largest plaintext part (16 .. 99,999,984 B); smaller parts upload over more connections.
        validate: Run the byte checks and XSD validation (without it only the root element is read).
        on_invalid: ``"stop"`` raises at the first invalid invoice; ``"skip"`` leaves invalid ones out.
        limits: Session limits (e.g. from ``GET /limits/context``); its ``part_size`` is replaced by
            ``part_size``.
        workers: Validation workers (default: the CPU count, at most 8).
        executor: Describe invoices in ``"process"``es or ``"thread"``s; ``"auto"`` (default): processes when
            validating, threads otherwise (see the module docstring).
        level: Deflate level.
        on_session: Called with each session as soon as its parts are complete (before the plan is written;
            under ``on_invalid="stop"`` a later invalid invoice still deletes them).
        clock: Current UTC time, for ``BatchPlan.created``.
        check_cancelled: Called before each invoice; whatever it raises aborts the run (and deletes the spool).
        on_abort: Called when the run fails, before the spool files are deleted: whoever reads the parts handed
            to ``on_session`` (uploads) must have stopped when it returns. Its own failure does not stop the
            deletion.

    Returns:
        The plan, also saved as ``<state_dir>/plan.json``.

    Raises:
        InvoiceError: With ``on_invalid="stop"``: the first invalid invoice (nothing is left in ``state_dir``);
            with ``"skip"``: no invoice at all was valid.
        ConfigurationError: Bad options, an unreadable input or an unusable state directory.
    """
    if on_invalid not in {"stop", "skip"}:
        msg = f"on_invalid must be 'stop' or 'skip', got {on_invalid!r}"
        raise ConfigurationError(msg)
    limits = attrs.evolve(limits or SessionLimits(), part_size=check_part_size(part_size))
    rsa_key, key_id = _rsa_key(public_key)
    run = _Run(
        _open_state_dir(state_dir),
        limits,
        rsa_key=rsa_key,
        key_id=key_id,
        level=level,
        on_invalid=on_invalid,
        on_session=on_session,
    )
    try:
        # Closed here, not left to the garbage collector: closing joins the describing threads or ends the worker
        # processes, which must not happen at an arbitrary allocation (on 3.12 a collection inside threading's own
        # lock-holding code deadlocked every later Thread.start).
        with contextlib.closing(_described(inputs, validate, level, workers or _default_workers(), executor)) as items:
            for fields, problems, deflated in items:
                if check_cancelled is not None:
                    check_cancelled()
                run.add(None if fields is None else _entry(fields), problems, deflated)
        batch = run.finish(clock())
    except BaseException:
        try:
            if on_abort is not None:
                on_abort()
        finally:
            run.abort()
        raise
    return batch


class _Run:
    """The state of one `prepare_batch_sync` call."""

    def __init__(
        self, directory: Path, limits: SessionLimits, *, rsa_key: rsa.RSAPublicKey, key_id: str | None,
        level: int, on_invalid: OnInvalid, on_session: Callable[[SessionPlan], object] | None,
    ) -> None:  # fmt: skip
        self.directory = directory
        self.limits = limits
        self.rsa_key = rsa_key
        self.key_id = key_id
        self.level = level
        self.on_invalid = on_invalid
        self.on_session = on_session
        self.created: list[Path] = []
        self.writers: dict[int, _SessionWriter] = {}
        self.sessions: list[SessionPlan] = []
        self.skipped: list[InvoiceProblem] = []
        self.packer = SessionPacker(limits)
        self.seen = DuplicateCheck()
        self.entry_texts: dict[int, list[str]] = {}  # session index -> its entries' plan JSON, in order
        self.json_memo = InvoicesJsonMemo()

    def reject(self, problems: Iterable[InvoiceProblem]) -> None:
        if self.on_invalid == "stop":
            raise InvoiceError(list(problems))
        self.skipped.extend(problems)

    def add(
        self, entry: InvoiceEntry | None, problems: tuple[InvoiceProblem, ...], deflated: DeflatedEntry | None
    ) -> None:
        if entry is None:
            self.reject(problems)
            return
        duplicate = self.seen.check(entry.name, entry.sha256, entry.source)
        if duplicate is not None:
            self.reject([duplicate])
            return
        if deflated is None:  # `DuplicateCheck` explains every name deflate_entry refuses; this is a backstop
            self.reject([InvoiceProblem(entry.name, "cannot name a file in the archive", None, "name")])
            return
        try:
            index, closed = self.packer.add(entry, deflated.archive_size)
        except InvoiceError as exc:
            self.reject(exc.problems)
            return
        if closed is not None:
            self.finish_session(closed)
        self.entry_texts.setdefault(index, []).append(entry_json(entry))
        writer = self.writers.get(index)
        if writer is None:
            writer = _SessionWriter(
                SessionPlan(index, entry.form, ()),
                self.directory,
                part_size=self.limits.part_size,
                public_key=self.rsa_key,
                key_id=self.key_id,
                level=self.level,
                created=self.created,
            )
            self.writers[index] = writer
        writer.add(deflated)

    def finish_session(self, plan: SessionPlan) -> None:
        done = self.writers.pop(plan.index).finish(plan)
        self.json_memo.keep(done.index, done.invoices, self.entry_texts.pop(done.index))
        self.sessions.append(done)
        if self.on_session is not None:
            self.on_session(done)

    def finish(self, now: dt.datetime) -> BatchPlan:
        for plan in self.packer.finish():
            self.finish_session(plan)
        self.seen = DuplicateCheck()  # its name and hash maps are not needed any more: free them before saving
        if not self.sessions:
            raise InvoiceError(self.skipped or [InvoiceProblem("<inputs>", "no invoices were given", None, "empty")])
        sessions = tuple(sorted(self.sessions, key=lambda s: s.index))
        batch = BatchPlan(sessions, tuple(self.skipped), now, self.limits.part_size)
        save_plan(self.directory, batch, self.json_memo)
        return batch

    def abort(self) -> None:
        """Delete every spool file this run created: nothing that could be sent stays behind."""
        for writer in self.writers.values():
            writer.spool.abort()
        for path in self.created:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _bridge(source: AsyncIterable[InputItem]) -> Iterator[InputItem]:
    """Pull an async iterable from a worker thread started by `anyio.to_thread.run_sync`."""
    iterator = aiter(source)

    async def step() -> tuple[bool, InputItem | None]:
        try:
            return True, await anext(iterator)
        except StopAsyncIteration:
            return False, None

    while True:
        more, item = anyio.from_thread.run(step)
        if not more:
            return
        assert item is not None
        yield item


async def prepare_batch(
    inputs: Inputs,
    *,
    public_key: MfPublicKey | rsa.RSAPublicKey,
    state_dir: str | os.PathLike[str],
    part_size: int = MAX_PART_PLAIN_SIZE,
    validate: bool = True,
    on_invalid: OnInvalid = "stop",
    limits: SessionLimits | None = None,
    workers: int | None = None,
    executor: Executor = "auto",
    on_session: Callable[[SessionPlan], Awaitable[object] | object] | None = None,
    on_abort: Callable[[], Awaitable[object]] | None = None,
) -> BatchPlan:
    """Async form of `prepare_batch_sync`: all the work runs in a worker thread, never on the event loop.

    ``inputs`` may also be an async iterable (it is pulled from the worker thread). ``on_session`` may be a
    coroutine function; it runs on the event loop. Cancelling the calling task stops the worker at the next
    invoice and deletes what it spooled. ``on_abort`` is awaited on the event loop when the run fails, also
    after a cancellation (anyio runs it under the worker's shielded wait), before the spool files are deleted:
    it must stop, and wait for, every task that reads the parts ``on_session`` handed out.
    """
    source: InputItem | Iterable[InputItem]
    source = _bridge(inputs) if isinstance(inputs, AsyncIterable) else inputs

    def notify(session: SessionPlan) -> None:
        if on_session is None:
            return

        async def call() -> None:
            result = on_session(session)
            if isinstance(result, Awaitable):
                await result

        anyio.from_thread.run(call)

    def abort() -> None:
        if on_abort is None:
            return

        async def call() -> None:
            await on_abort()

        anyio.from_thread.run(call)

    def run() -> BatchPlan:
        return prepare_batch_sync(
            source,
            public_key=public_key,
            state_dir=state_dir,
            part_size=part_size,
            validate=validate,
            on_invalid=on_invalid,
            limits=limits,
            workers=workers,
            executor=executor,
            on_session=notify if on_session is not None else None,
            check_cancelled=anyio.from_thread.check_cancelled,
            on_abort=abort,
        )

    return await anyio.to_thread.run_sync(run)
