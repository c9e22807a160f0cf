"""The typed event stream of a batch send: what happened, as frozen values, for a callback or an async iterator.

Events are plain values with no secrets (no URLs, no keys). Byte progress is reported as signed deltas:
`PartProgress.delta` is negative when a failed part is retried and its bytes are rewound, so a progress bar fed
by the deltas goes backwards exactly as far as the retry restarts (s3transfer's model).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import TypeAlias

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "BatchEvent",
    "EventSink",
    "EventStream",
    "InvoicesValidated",
    "OutageWaiting",
    "PartProgress",
    "PartRetried",
    "PartUploaded",
    "ResultsFetched",
    "SessionPrepared",
    "SessionStatusChanged",
    "StageFinished",
    "UpoSaved",
]


@attrs.frozen
class InvoicesValidated:
    """Preparation finished: how many invoices go out and how many were left out."""

    invoices: int
    skipped: int
    bytes_in: int


@attrs.frozen
class SessionPrepared:
    """A session's parts are spooled and hashed (``ciphertext_bytes`` is what the upload will send)."""

    session: int
    invoices: int
    parts: int
    ciphertext_bytes: int


@attrs.frozen
class PartProgress:
    """Bytes of a part went out (``delta`` > 0) or were rewound for a retry (``delta`` < 0)."""

    session: int
    ordinal: int
    delta: int


@attrs.frozen
class PartUploaded:
    """The storage acknowledged a part (2xx)."""

    session: int
    ordinal: int
    size: int
    attempts: int


@attrs.frozen
class PartRetried:
    """A part upload failed and will be tried again after ``wait`` seconds; ``error`` says why (no URL)."""

    session: int
    ordinal: int
    attempt: int
    error: str
    wait: float


@attrs.frozen
class SessionStatusChanged:
    """A session's state or KSeF status changed (``code`` is KSeF's status code once known)."""

    session: int
    state: str
    reference_number: str | None = None
    code: int | None = None
    description: str | None = None


@attrs.frozen
class ResultsFetched:
    """Per-invoice results of a session were matched to its inputs."""

    session: int
    accepted: int
    duplicates: int
    rejected: int
    missing: int


@attrs.frozen
class UpoSaved:
    """A session UPO page was downloaded, hash-checked and saved to ``path``."""

    session: int
    path: str


@attrs.frozen
class StageFinished:
    """A stage of the send (``prepare``, ``open``, ``upload``, ``close``, ``process``, ``results``, ``upo``) ended.

    Stages of several sessions overlap, so ``seconds`` is the wall time during which at least one session was in
    the stage (the union of their intervals) so far.
    """

    stage: str
    seconds: float


@attrs.frozen
class OutageWaiting:
    """API calls failed while the status service announces a KSeF outage: the send waits (or stopped waiting).

    ``message`` is the human line, e.g. ``"KSeF reports FAILURE since 2026-01-31T11:27:00+00:00; waiting"``.
    """

    state: str
    since: str | None
    waited: float
    finished: bool
    gave_up: bool
    message: str


BatchEvent: TypeAlias = (
    InvoicesValidated
    | SessionPrepared
    | PartProgress
    | PartUploaded
    | PartRetried
    | SessionStatusChanged
    | ResultsFetched
    | UpoSaved
    | StageFinished
    | OutageWaiting
)
"""Every event type the engine emits."""

EventSink: TypeAlias = Callable[[BatchEvent], None]
"""A synchronous event consumer; it runs on the event loop, so it must return quickly."""


class EventStream:
    """Turns the engine's callback into an async iterator for services.

    Use ``stream.emit`` as the engine's ``on_event`` and iterate ``stream`` in another task; `close` ends the
    iteration. The buffer is unbounded so a slow consumer never stalls an upload (events are small).

    Example::

        stream = EventStream()
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, stream)
            try:
                await engine.send(paths, on_event=stream.emit)
            finally:
                stream.close()
    """

    def __init__(self) -> None:
        send: MemoryObjectSendStream[BatchEvent]
        receive: MemoryObjectReceiveStream[BatchEvent]
        send, receive = anyio.create_memory_object_stream[BatchEvent](math.inf)
        self._send = send
        self._receive = receive

    def emit(self, event: BatchEvent) -> None:
        """Queue ``event`` (never blocks); events after `close` are dropped."""
        try:
            self._send.send_nowait(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    def close(self) -> None:
        """End the iteration once the queued events are consumed."""
        self._send.close()

    def __aiter__(self) -> AsyncIterator[BatchEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[BatchEvent]:
        async with self._receive:
            async for event in self._receive:
                yield event
