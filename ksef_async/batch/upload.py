"""Upload one encrypted part from its spool file: streamed with a Content-Length, retried with back-off in its window.

A part is sent exactly as KSeF described it (method, URL, headers from ``partUploadRequests``); the transport
adds Content-Length and never an ``Authorization`` header. Each attempt reopens the spool file, so a retry always
restarts from byte 0; the bytes already reported as sent are rewound with a negative `PartProgress` first.

What is retried: no answer (connection reset, timeout), 5xx, 408 and 429 from the storage. What is not: other
4xx. A 403 means the signed URL expired (the window closed): `UploadWindowClosedError`, so the coordinator
re-sends the parts in a new session. Attempts stop when the next
one would start after the part's upload deadline (20 min x the number of declared parts from the open).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Final, Protocol

import anyio
import attrs

from ksef_async.batch.events import EventSink, PartProgress, PartRetried, PartUploaded
from ksef_async.core.polling import Backoff
from ksef_async.errors import ApiError, KsefError, TransportError
from ksef_async.models import PartUploadRequest

__all__ = ["PartRequest", "PartUploader", "UploadWindowClosedError", "upload_part"]

_RETRY_STATUSES: Final = frozenset({408, 429})
_FORBIDDEN: Final = 403


@attrs.frozen
class PartRequest:
    """One entry of ``partUploadRequests``: where and how to send part ``ordinal``.

    The URL carries a signature (``sig``): it is a credential, so it is excluded from the repr.
    """

    ordinal: int
    method: str
    url: str = attrs.field(repr=False)
    headers: Mapping[str, str | None] = attrs.field(factory=dict)

    @classmethod
    def from_model(cls, request: PartUploadRequest) -> PartRequest:
        """Keep one entry of ``OpenBatchSessionResponse.partUploadRequests`` (as structured by the resource)."""
        return cls(request.ordinal_number, request.method, request.url, dict(request.headers))

    def model(self) -> PartUploadRequest:
        """Return the request as the ``PartUploadRequest`` model `ksef_async.resources.batch.BatchResource` takes."""
        return PartUploadRequest(
            ordinal_number=self.ordinal, method=self.method, url=self.url, headers=dict(self.headers)
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> PartRequest:
        """Read back `to_json`'s object from an upload record (``ordinalNumber``, ``method``, ``url``, ``headers``)."""
        headers = raw.get("headers") or {}
        if not isinstance(headers, Mapping):
            headers = {}
        return cls(
            int(str(raw["ordinalNumber"])),
            str(raw["method"]),
            str(raw["url"]),
            {str(k): (None if v is None else str(v)) for k, v in headers.items()},
        )

    def to_json(self) -> dict[str, object]:
        """Return the ``PartUploadRequest`` object as KSeF sent it."""
        return {"ordinalNumber": self.ordinal, "method": self.method, "url": self.url, "headers": dict(self.headers)}


class PartUploader(Protocol):
    """Sends one part to its pre-signed URL (`ksef_async.resources.batch.BatchResource.upload_part`)."""

    async def upload_part(self, request: PartUploadRequest, body: bytes | BinaryIO, size: int) -> int:
        """Upload ``size`` bytes of ``body`` exactly as ``request`` says; return the storage's 2xx status."""
        ...


class UploadWindowClosedError(KsefError):
    """A part could not be uploaded before the session's upload window closed."""


class _CountingReader(io.BufferedReader):
    """A spool file that reports each chunk read; aiohttp reads it in an executor thread."""

    def __init__(self, raw: io.FileIO, on_read: Callable[[int], None]) -> None:
        super().__init__(raw, buffer_size=1 << 16)
        self._on_read = on_read

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if data:
            self._on_read(len(data))
        return data


class _Counter:
    """Bytes reported for one attempt; closed once the attempt ends, so late reads never count twice."""

    def __init__(self, session: int, ordinal: int, emit: EventSink) -> None:
        self._session = session
        self._ordinal = ordinal
        self._emit = emit
        self.sent = 0
        self._closed = False

    def add(self, n: int) -> None:
        if not self._closed:
            self.sent += n
            self._emit(PartProgress(self._session, self._ordinal, n))

    def rewind(self) -> None:
        self._closed = True
        if self.sent:
            self._emit(PartProgress(self._session, self._ordinal, -self.sent))

    def complete(self, size: int) -> None:
        # aiohttp may read part of the file without our counter (e.g. a first chunk); make the total exact.
        self._closed = True
        if self.sent != size:
            self._emit(PartProgress(self._session, self._ordinal, size - self.sent))


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, ApiError):
        return exc.status >= 500 or exc.status in _RETRY_STATUSES  # noqa: PLR2004
    return False


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status}"
    return type(exc).__name__


def _open_spool(path: Path, ordinal: int) -> io.FileIO:
    from ksef_async.errors import ConfigurationError  # noqa: PLC0415

    try:
        return io.FileIO(path, "r")
    except OSError as exc:
        # Gone (or unreadable) since the size check: retrying cannot bring it back.
        msg = f"{path}: spool file of part {ordinal} cannot be read: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc


async def _check_spool(path: Path, size: int, ordinal: int) -> None:
    """Check that the spool file of part ``ordinal`` exists and has the declared ``size``.

    Raises:
        ConfigurationError: It is missing, unreadable or of another size (retrying cannot help).
    """
    from ksef_async.errors import ConfigurationError  # noqa: PLC0415

    try:
        actual = (await anyio.Path(path).stat()).st_size
    except OSError as exc:
        msg = f"{path}: spool file of part {ordinal} cannot be read: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc
    if actual != size:
        msg = f"{path}: spool file has {actual:,} bytes, but {size:,} were declared for part {ordinal}"
        raise ConfigurationError(msg)


async def upload_part(
    uploader: PartUploader,
    *,
    session: int,
    request: PartRequest,
    path: Path,
    size: int,
    deadline: dt.datetime,
    now: Callable[[], dt.datetime],
    backoff: Backoff,
    emit: EventSink,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Upload ``path`` (``size`` bytes) as described by ``request``; retry until acknowledged or out of time.

    Args:
        uploader: Where to send (``client.batch``, or a wrapper that waits out outages).
        session: The session index (for events).
        request: The part's upload request.
        path: The spool file.
        size: Its size (``fileSize`` declared at open).
        deadline: End of the upload window (aware UTC).
        now: Current aware UTC time.
        backoff: Waits between attempts.
        emit: Event consumer.
        sleep: Async sleep (tests inject a fake).

    Returns:
        The number of attempts made.

    Raises:
        UploadWindowClosedError: The window closed before an attempt succeeded.
        ApiError: The storage refused the part with a status that retrying cannot change.
        ConfigurationError: The spool file is missing or has the wrong size.
    """
    # Long by its docstring: the attempt loop (window check, counted read, rewind, classify, wait) reads best whole.
    await _check_spool(path, size, request.ordinal)
    loop = asyncio.get_running_loop()
    model = request.model()
    attempt = 0
    while True:
        attempt += 1
        if now() >= deadline:
            msg = f"session {session}: the upload window closed before part {request.ordinal} was uploaded"
            raise UploadWindowClosedError(msg)
        counter = _Counter(session, request.ordinal, emit)

        def on_read(n: int, counter: _Counter = counter) -> None:
            loop.call_soon_threadsafe(counter.add, n)

        raw = _open_spool(path, request.ordinal)
        try:
            with _CountingReader(raw, on_read) as body:
                await uploader.upload_part(model, body, size)
        except Exception as exc:
            await asyncio.sleep(0)  # let queued progress callbacks run before the rewind
            counter.rewind()
            if isinstance(exc, ApiError) and exc.status == _FORBIDDEN:
                # The storage refuses a URL whose window has closed (the signed expiry passed).
                msg = f"session {session}: the storage refused part {request.ordinal} (HTTP 403): window closed"
                raise UploadWindowClosedError(msg) from exc
            if not _retryable(exc):
                raise
            wait = backoff.delay(attempt - 1)
            remaining = (deadline - now()).total_seconds()
            if remaining <= wait:
                msg = (
                    f"session {session}: part {request.ordinal} failed ({_describe(exc)}) and the upload window "
                    "closes before another attempt"
                )
                raise UploadWindowClosedError(msg) from exc
            emit(PartRetried(session, request.ordinal, attempt, _describe(exc), wait))
            await sleep(wait)
            continue
        await asyncio.sleep(0)
        counter.complete(size)
        emit(PartUploaded(session, request.ordinal, size, attempt))
        return attempt
