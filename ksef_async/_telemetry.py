"""Optional OpenTelemetry spans and metrics (extra ``otel``); without ``opentelemetry-api`` every hook does nothing.

The API is imported once, here. When it is missing, `ENABLED` is false and the hooks return at once, so the
client pays one attribute test per call. With the API but no SDK configured by the application, OpenTelemetry's own
no-op provider receives everything; an application that installs an SDK sees:

Spans (tracer ``ksef_async``):

* ``KSeF {operation_id}`` per API call (retries included), kind CLIENT: ``ksef.operation``,
  ``http.request.method``, ``ksef.rate_limit_group``, ``ksef.reference_number`` (from the path, else the answer's
  ``referenceNumber``), ``http.response.status_code``, ``ksef.error.codes`` and the error type on failure;
* ``KSeF batch session`` and ``KSeF online session`` per session, from open to its final status:
  ``ksef.session.mode``, ``ksef.reference_number``, ``ksef.session.status_code``, ``ksef.session.index`` (batch).

Metrics (meter ``ksef_async``):

* ``ksef.invoices.sent``, ``ksef.invoices.accepted``, ``ksef.invoices.rejected`` (counters; ``ksef.session.mode``);
* ``ksef.ratelimit.wait`` (histogram, s; ``ksef.rate_limit_group``): time spent in the rate limiter per call;
* ``ksef.ratelimit.throttled`` (counter; ``ksef.rate_limit_group``): 429 answers;
* ``ksef.retries`` (counter; ``ksef.operation``, ``ksef.retry.reason``: ``error`` or ``rate_limited``);
* ``ksef.part.upload.throughput`` (histogram, By/s) and ``ksef.part.upload.bytes`` (counter, By);
* ``ksef.session.duration`` (histogram, s; ``ksef.session.mode``): open to final status;
* ``ksef.upo.latency`` (histogram, s; ``ksef.session.mode``): close to the first UPO page saved.

No attribute ever holds a secret: no token, key, URL or signature; only operation names, groups, reference
numbers, codes and counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ksef_async.core.extras import require_extra
from ksef_async.errors import ApiError, KsefError, MissingExtraError

if TYPE_CHECKING:
    from ksef_async.operations import Operation

__all__ = [
    "ENABLED",
    "api_call",
    "invoices",
    "limiter_waited",
    "part_uploaded",
    "rate_limited",
    "require_otel",
    "retried",
    "session_closed",
    "session_ended",
    "session_started",
    "upo_received",
    "use_providers",
]

T = TypeVar("T")

try:  # the one guarded import: the `otel` extra
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on installed extras
    _metrics = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

ENABLED: Final = _trace is not None
"""Whether ``opentelemetry-api`` is installed (the hooks do nothing otherwise)."""

_NAME: Final = "ksef_async"
_MAX_SCAN: Final = 65_536  # an answer's referenceNumber is looked for only in small JSON bodies


def require_otel() -> None:
    """Check that the ``otel`` extra is installed.

    Raises:
        MissingExtraError: ``opentelemetry-api`` is not installed (the message names the extra).
    """
    if not ENABLED:
        raise MissingExtraError("OpenTelemetry tracing and metrics", "otel", "opentelemetry")
    require_extra("opentelemetry.trace", extra="otel")


class _Instruments:
    """The tracer and instruments, created on first use from the global providers (so an SDK set later counts)."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        assert _trace is not None
        assert _metrics is not None
        from ksef_async._version import __version__  # noqa: PLC0415 - only when telemetry is on

        self.tracer = _trace.get_tracer(_NAME, __version__, tracer_provider=tracer_provider)
        meter = _metrics.get_meter(_NAME, __version__, meter_provider=meter_provider)
        self.sent = meter.create_counter("ksef.invoices.sent", unit="{invoice}", description="Invoices sent to KSeF")
        self.accepted = meter.create_counter(
            "ksef.invoices.accepted", unit="{invoice}", description="Invoices KSeF accepted (duplicates included)"
        )
        self.rejected = meter.create_counter(
            "ksef.invoices.rejected", unit="{invoice}", description="Invoices KSeF rejected"
        )
        self.wait = meter.create_histogram(
            "ksef.ratelimit.wait", unit="s", description="Time a call waited in the rate limiter"
        )
        self.throttled = meter.create_counter("ksef.ratelimit.throttled", unit="{response}", description="429 answers")
        self.retries = meter.create_counter("ksef.retries", unit="{retry}", description="API calls tried again")
        self.throughput = meter.create_histogram(
            "ksef.part.upload.throughput", unit="By/s", description="Bytes per second of each batch part upload"
        )
        self.part_bytes = meter.create_counter(
            "ksef.part.upload.bytes", unit="By", description="Batch part bytes uploaded"
        )
        self.session_duration = meter.create_histogram(
            "ksef.session.duration", unit="s", description="A session from open to its final status"
        )
        self.upo_latency = meter.create_histogram(
            "ksef.upo.latency", unit="s", description="From closing a session to its first UPO page"
        )


_instruments: _Instruments | None = None


def _get() -> _Instruments:
    global _instruments  # noqa: PLW0603 - created once, lazily
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Send to these providers instead of the global ones (``None``: back to the global providers, lazily).

    For tests, and for applications that keep their providers out of the OpenTelemetry globals.
    """
    global _instruments  # noqa: PLW0603
    _instruments = (
        None if tracer_provider is None and meter_provider is None else _Instruments(tracer_provider, meter_provider)
    )
    _sessions.clear()


# -- API calls --------------------------------------------------------------------------------------------------------


async def api_call(op: Operation, reference_number: str | None, call: Awaitable[T]) -> T:
    """Await ``call`` (one API operation, retries included) inside a span; return its result."""
    if not ENABLED:
        return await call
    assert _trace is not None
    attributes: dict[str, Any] = {
        "ksef.operation": op.operation_id,
        "http.request.method": op.method,
        "ksef.rate_limit_group": op.rate_group,
    }
    if reference_number is not None:
        attributes["ksef.reference_number"] = reference_number
    with _get().tracer.start_as_current_span(
        f"KSeF {op.operation_id}", kind=_trace.SpanKind.CLIENT, attributes=attributes, record_exception=False
    ) as span:
        try:
            result = await call
        except KsefError as exc:
            span.set_attribute("error.type", type(exc).__name__)
            if isinstance(exc, ApiError):
                span.set_attribute("http.response.status_code", exc.status)
                if exc.codes:
                    span.set_attribute("ksef.error.codes", list(exc.codes))
            span.set_status(_trace.Status(_trace.StatusCode.ERROR, type(exc).__name__))
            raise
        status = getattr(result, "status", None)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
        if reference_number is None:
            found = _answer_reference(result)
            if found is not None:
                span.set_attribute("ksef.reference_number", found)
        return result


def _answer_reference(result: object) -> str | None:
    body = getattr(result, "body", None)
    if not isinstance(body, bytes) or not body.startswith(b"{") or len(body) > _MAX_SCAN:
        return None
    try:
        value = json.loads(body).get("referenceNumber")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None  # noqa: PLR2004


def limiter_waited(group: str, seconds: float) -> None:
    """Record the time one call waited for its rate-limit group."""
    if ENABLED:
        _get().wait.record(seconds, {"ksef.rate_limit_group": group})


def rate_limited(group: str) -> None:
    """Count a 429 for ``group``."""
    if ENABLED:
        _get().throttled.add(1, {"ksef.rate_limit_group": group})


def retried(operation: str, reason: str = "error") -> None:
    """Count one more try of ``operation`` (``reason``: ``error`` or ``rate_limited``)."""
    if ENABLED:
        _get().retries.add(1, {"ksef.operation": operation, "ksef.retry.reason": reason})


# -- sessions and invoices --------------------------------------------------------------------------------------------


class _Session:
    __slots__ = ("closed", "span", "started", "upo_seen")

    def __init__(self, span: Any, started: float) -> None:
        self.span = span
        self.started = started
        self.closed: float | None = None
        self.upo_seen = False


_sessions: dict[tuple[str, str], _Session] = {}
_MAX_OPEN_SESSIONS: Final = 10_000  # a bound: sessions never ended (a crash mid-send) do not pile up for ever


def session_started(
    mode: str, reference_number: str, *, clock: Callable[[], float] = time.monotonic, **attrs: Any
) -> None:
    """Start the span of session ``reference_number`` (``mode``: ``batch`` or ``online``); idempotent."""
    if not ENABLED or (mode, reference_number) in _sessions:
        return
    if len(_sessions) >= _MAX_OPEN_SESSIONS:
        _sessions.pop(next(iter(_sessions))).span.end()
    attributes = {"ksef.session.mode": mode, "ksef.reference_number": reference_number}
    attributes.update({f"ksef.session.{k}": v for k, v in attrs.items() if v is not None})
    span = _get().tracer.start_span(f"KSeF {mode} session", attributes=attributes)
    _sessions[(mode, reference_number)] = _Session(span, clock())


def session_closed(mode: str, reference_number: str, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Note that the session was closed (the UPO latency runs from here)."""
    if not ENABLED:
        return
    session = _sessions.get((mode, reference_number))
    if session is not None and session.closed is None:
        session.closed = clock()
        session.span.add_event("closed")


def upo_received(mode: str, reference_number: str, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Record the UPO latency of the session (its first page only)."""
    if not ENABLED:
        return
    session = _sessions.get((mode, reference_number))
    if session is None or session.upo_seen or session.closed is None:
        return
    session.upo_seen = True
    latency = clock() - session.closed
    _get().upo_latency.record(latency, {"ksef.session.mode": mode})
    session.span.add_event("upo", {"ksef.upo.latency_s": latency})


def session_ended(
    mode: str, reference_number: str, status_code: int | None, *, clock: Callable[[], float] = time.monotonic
) -> None:
    """End the session's span with KSeF's final status code and record its duration."""
    if not ENABLED:
        return
    session = _sessions.pop((mode, reference_number), None)
    if session is None:
        return
    assert _trace is not None
    if status_code is not None:
        session.span.set_attribute("ksef.session.status_code", status_code)
    if status_code is None or status_code >= 300:  # noqa: PLR2004 - KSeF's failure codes
        session.span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"session status {status_code}"))
    _get().session_duration.record(clock() - session.started, {"ksef.session.mode": mode})
    session.span.end()


def invoices(mode: str, *, sent: int = 0, accepted: int = 0, rejected: int = 0) -> None:
    """Count invoices sent, accepted (duplicates included) and rejected."""
    if not ENABLED:
        return
    inst = _get()
    labels = {"ksef.session.mode": mode}
    if sent:
        inst.sent.add(sent, labels)
    if accepted:
        inst.accepted.add(accepted, labels)
    if rejected:
        inst.rejected.add(rejected, labels)


def part_uploaded(size: int, seconds: float | None) -> None:
    """Count one uploaded part's bytes and, when its upload time is known and positive, its throughput."""
    if not ENABLED:
        return
    inst = _get()
    inst.part_bytes.add(size)
    if seconds is not None and seconds > 0:
        inst.throughput.record(size / seconds)
