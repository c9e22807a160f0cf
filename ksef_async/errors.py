"""The one exception tree of ksef-async, and the parsers that turn KSeF error bodies into it.

::

    KsefError                          base of everything this package raises on purpose
    ├── ConfigurationError             bad options, missing credentials, unusable files (CLI exit 2)
    │   ├── NaiveDateTimeError         a date-time without a UTC offset where KSeF needs one (.field)
    │   └── MissingExtraError          an optional feature used without its extra (.extra, .module, .feature)
    ├── InvoiceError                   one or more invoices are invalid before anything is sent
    │                                  (.problems: list[InvoiceProblem] each with file, line, reason)
    ├── CryptoError                    a key, certificate or ciphertext cannot be used
    ├── TransportError                 the request may not have reached KSeF (connection, timeout)
    │   └── AmbiguousRequestError      a non-idempotent request may have taken effect: check before retrying
    ├── ApiError                       KSeF answered with an error status
    │   │                              (.status, .errors: list[ApiErrorDetail], .reference_number, .trace_id)
    │   ├── BadRequestError            400 (ExceptionResponse or problem+json); codes in .errors[i].code
    │   │   ├── UnreadableContentError     21001 the body could not be read (malformed JSON, bad encoding)
    │   │   ├── DateRangeRefusedError      21405 on dateRange (.rule: 100 days in UTC, explicit offsets)
    │   │   ├── SessionTemporarilyUnavailableError  21184 maintenance on the online session: retry or reopen
    │   │   ├── CollectiveIdentifierError  a collective identifier refused (.ksef_numbers named by KSeF)
    │   │   │   ├── InvoiceNotFoundError               71001 a KSeF number is unknown
    │   │   │   ├── CollectiveIdentifierCapError       71002 an invoice is in the maximum number of identifiers
    │   │   │   ├── DifferentSellersError              71004 the invoices have different sellers
    │   │   │   └── DuplicateKsefNumberError           71005 a KSeF number is repeated in the request
    │   │   └── TechnicalCorrectionError   a technical correction refused (.file)
    │   │       ├── CorrectionUnavailableError   21166
    │   │       └── CorrectionNotAllowedError    21167
    │   ├── UnauthorizedError          401 problem+json
    │   ├── ForbiddenError             403 problem+json (.reason_code, .security)
    │   ├── NotFoundError              404
    │   ├── GoneError                  410 retention expired
    │   ├── RateLimitedError           429 (.retry_after seconds, .group when known)
    │   │   └── RateLimitWaitExceededError  the local limiter would wait longer than max_wait (nothing sent)
    │   └── ServerError                5xx
    ├── OperationFailedError           an asynchronous operation ended in a failure status
    │   │                              (.code, .description, .details, .reference_number)
    │   ├── AuthenticationFailedError  GET /auth/{ref} ended with a code >= 300
    │   ├── SessionFailedError         a session ended in 4xx/5xx
    │   └── ExportFailedError          an export ended in 210/415/420/500/550
    ├── IntegrityError                 a hash or size from KSeF does not match the bytes received
    ├── ProtocolError                  a server broke a bound: an unsafe name, an oversized body, an endless loop
    │   │                              (.operation, .field when known)
    │   └── ResponseFormatError        a KSeF success body does not match its model in the spec
    │                                  (.operation, .field, .problems: tuple of "$.path: reason", never values)
    └── DeadlineExceededError          polling gave up at the caller's deadline

Secrets never reach these messages: callers pass only codes, descriptions and reference numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ksef_async._codes import ExceptionCode
from ksef_async._redact import redact_server_text

__all__ = [
    "AmbiguousRequestError",
    "ApiError",
    "ApiErrorDetail",
    "AuthenticationFailedError",
    "BadRequestError",
    "CollectiveIdentifierCapError",
    "CollectiveIdentifierError",
    "ConfigurationError",
    "CorrectionNotAllowedError",
    "CorrectionUnavailableError",
    "CryptoError",
    "DateRangeRefusedError",
    "DeadlineExceededError",
    "DifferentSellersError",
    "DuplicateKsefNumberError",
    "ExportFailedError",
    "ForbiddenError",
    "GoneError",
    "IntegrityError",
    "InvoiceError",
    "InvoiceNotFoundError",
    "InvoiceProblem",
    "KsefError",
    "MissingExtraError",
    "NaiveDateTimeError",
    "NotFoundError",
    "OperationFailedError",
    "ProtocolError",
    "RateLimitWaitExceededError",
    "RateLimitedError",
    "ResponseFormatError",
    "ServerError",
    "SessionFailedError",
    "SessionTemporarilyUnavailableError",
    "TechnicalCorrectionError",
    "TransportError",
    "UnauthorizedError",
    "UnreadableContentError",
    "api_error_from_response",
    "parse_retry_after",
]


class KsefError(Exception):
    """Base class of every error ksef-async raises on purpose."""


class ConfigurationError(KsefError):
    """Options, credentials or files given to the library cannot be used."""


class NaiveDateTimeError(ConfigurationError):
    """A date-time without a UTC offset was given where KSeF requires ``Z`` or an explicit offset.

    Attributes:
        field: The field it was given for, e.g. ``"dateRange.from"``.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"{field}: a date-time without a UTC offset; give 'Z' or an explicit offset such as +01:00")


class MissingExtraError(ConfigurationError):
    """An optional feature was used without the extra that installs its dependency.

    Raised by `ksef_async.core.extras.require_extra`; the message is one line naming the feature, the extra and
    the install command.

    Attributes:
        feature: What was used, e.g. ``"QR images"``.
        extra: The extra that installs it, e.g. ``"qr"``.
        module: The module that is missing, e.g. ``"segno"``.
    """

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        self.module = module
        super().__init__(
            f"{feature}: needs the '{extra}' extra ({module} is not installed); install it with: {self.install_command}"
        )

    @property
    def install_command(self) -> str:
        """The command that installs the extra."""
        return f"pip install 'ksef-async[{self.extra}]'"


class CryptoError(KsefError):
    """A key, certificate or ciphertext cannot be used."""


class IntegrityError(KsefError):
    """A hash or size announced by KSeF does not match the bytes received."""


class ProtocolError(KsefError):
    """A server (or a file from one) broke a documented bound, or answered with a body its operation cannot have.

    For example a name off its pattern, a path outside its directory, a body over its size limit, a page or a wait
    that never ends, a response that does not match its model. Nothing was written for the offending value; the
    message names it, redacted and shortened.

    Attributes:
        operation: The operation id (``ksef_async.operations``) whose response broke the rule, when known.
        field: The JSON path (``$.status.code``) or header of the offending value, when known.
    """

    def __init__(self, message: str, *, operation: str | None = None, field: str | None = None) -> None:
        self.operation = operation
        self.field = field
        super().__init__(message)


class DeadlineExceededError(KsefError):
    """Polling stopped at the caller's deadline before the operation finished."""


class ResponseFormatError(ProtocolError):
    """A KSeF response body does not match the model the spec gives it (KSeF changed, or a proxy answered).

    The one protocol error of a malformed response, whichever path made the call (resources, batch, online,
    retrieval). The message names the operation and the JSON paths of the offending fields, never their values: a
    body may hold tokens or pre-signed URLs.

    Attributes:
        operation: The operation id (``ksef_async.operations``) whose response failed.
        field: The JSON path of the first offending field, e.g. ``"$.status.code"``.
        problems: One ``"$.path: reason"`` per offending field, e.g. ``"$.status.code: expected int"``.
    """

    operation: str
    field: str

    def __init__(self, operation: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems) or ("$: does not match the model",)
        head = "; ".join(self.problems[:5])
        more = f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""  # noqa: PLR2004
        field = self.problems[0].split(":", 1)[0].strip() or "$"
        super().__init__(f"{operation}: unexpected response format: {head}{more}", operation=operation, field=field)


@attrs.frozen
class InvoiceProblem:
    """One reason an invoice cannot be sent.

    Attributes:
        file: The invoice's file name (or the name the caller gave it).
        reason: A readable reason.
        line: The 1-based line in the document, when known.
        rule: A short machine-readable rule name (e.g. ``"bom"``, ``"xsd"``, ``"size"``).
    """

    file: str
    reason: str
    line: int | None = None
    rule: str = "xsd"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"


class InvoiceError(KsefError):
    """One or more invoices are invalid; raised before anything is sent."""

    def __init__(self, problems: Sequence[InvoiceProblem]) -> None:
        self.problems = list(problems)
        files = sorted({p.file for p in self.problems})
        head = "; ".join(str(p) for p in self.problems[:3])
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""  # noqa: PLR2004
        super().__init__(f"invalid invoice(s) {', '.join(files)}: {head}{more}")


class TransportError(KsefError):
    """The request may not have reached KSeF: connection error or timeout."""


class AmbiguousRequestError(TransportError):
    """A request that changes state may have taken effect; check its outcome before retrying."""


def _redact_all(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(redact_server_text(str(v)) for v in values)


def _redact_optional(value: str | None) -> str | None:
    return None if value is None else redact_server_text(value, limit=200)


@attrs.frozen
class ApiErrorDetail:
    """One entry of a KSeF error body (``exceptionDetailList`` item or problem+json ``errors`` item).

    The texts come from a server: they are redacted and shortened on the way in (`redact_server_text`).
    """

    code: int | None
    description: str = attrs.field(converter=redact_server_text)
    details: tuple[str, ...] = attrs.field(default=(), converter=_redact_all)


class ApiError(KsefError):
    """KSeF answered with an error status."""

    def __init__(
        self,
        status: int,
        errors: Sequence[ApiErrorDetail] = (),
        *,
        title: str | None = None,
        reference_number: str | None = None,
        trace_id: str | None = None,
        operation: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.errors = list(errors)
        self.title = _redact_optional(title)
        self.reference_number = _redact_optional(reference_number)
        self.trace_id = _redact_optional(trace_id)
        title, trace_id = self.title, self.trace_id
        self.operation = operation
        self.body = dict(body) if body is not None else None
        parts = [f"HTTP {status}"]
        if operation:
            parts.append(operation)
        if title:
            parts.append(title)
        parts.extend(
            f"[{e.code}] {e.description}" + (f" ({'; '.join(e.details)})" if e.details else "") for e in self.errors
        )
        if trace_id:
            parts.append(f"traceId={trace_id}")
        super().__init__(": ".join(parts[:2]) + (" - " + " | ".join(parts[2:]) if len(parts) > 2 else ""))  # noqa: PLR2004

    @property
    def codes(self) -> list[int]:
        """All KSeF exception codes in the body."""
        return [e.code for e in self.errors if e.code is not None]

    def has_code(self, code: int) -> bool:
        """Tell whether the body lists the KSeF exception code ``code``."""
        return code in self.codes


class BadRequestError(ApiError):
    """HTTP 400."""


class UnreadableContentError(BadRequestError):
    """21001: KSeF could not read the request body (malformed JSON, wrong encoding); sending it again won't help."""


class DateRangeRefusedError(BadRequestError):
    """21405 naming ``dateRange``: KSeF refused the range (metadata query or export) although the client split it."""

    rule = "dateRange: at most 100 days counted in UTC; date-times with 'Z' or an explicit offset"
    """The API 2.9.0 rule the range broke (``InvoiceQueryFilters.dateRange``)."""

    def __str__(self) -> str:
        return f"{super().__str__()} [rule: {self.rule}]"


class SessionTemporarilyUnavailableError(BadRequestError):
    """21184: maintenance on the online session; retry later or open a new session for the remaining invoices."""


class CollectiveIdentifierError(BadRequestError):
    """KSeF refused to generate a collective identifier (71001-71005).

    ``ksef_numbers`` lists the KSeF numbers KSeF named in the error details (empty when it named none).
    """

    @property
    def ksef_numbers(self) -> list[str]:
        """KSeF numbers named in the error details."""
        return [
            word.rstrip(".,;")
            for error in self.errors
            for detail in error.details
            for word in detail.split()
            if _looks_like_ksef_number(word.rstrip(".,;"))
        ]


class InvoiceNotFoundError(CollectiveIdentifierError):
    """71001: a KSeF number in the request names no invoice."""


class CollectiveIdentifierCapError(CollectiveIdentifierError):
    """71002: an invoice already belongs to the maximum number of collective identifiers (132 per context)."""


class DifferentSellersError(CollectiveIdentifierError):
    """71004: the invoices of one collective identifier must all have the same seller."""


class DuplicateKsefNumberError(CollectiveIdentifierError):
    """71005: a KSeF number appears more than once in the request."""


def _looks_like_ksef_number(word: str) -> bool:
    # KsefNumber: 10-digit NIP, date, 12 hex digits and a 2-hex-digit checksum joined by hyphens (35 characters).
    return len(word) == 35 and word.count("-") == 3  # noqa: PLR2004


class TechnicalCorrectionError(BadRequestError):
    """KSeF refused a technical correction (HTTP 400, 21166 or 21167); ``file`` names the corrected invoice.

    Nothing was accepted: the online session it was sent in is closed empty.
    """

    def __init__(self, file: str, cause: ApiError) -> None:
        super().__init__(
            cause.status,
            cause.errors,
            title=cause.title,
            reference_number=cause.reference_number,
            trace_id=cause.trace_id,
            operation=cause.operation,
            body=cause.body,
        )
        self.file = file
        self.args = (f"{file}: {self.args[0]}",)


class CorrectionUnavailableError(TechnicalCorrectionError):
    """21166: no technical correction is possible, e.g. a valid correction of the same original already exists."""


class CorrectionNotAllowedError(TechnicalCorrectionError):
    """21167: the original's status forbids a technical correction (accepted, still processing, not offline...)."""


class UnauthorizedError(ApiError):
    """HTTP 401."""


class ForbiddenError(ApiError):
    """HTTP 403, with the problem+json ``reasonCode`` and ``security`` content."""

    @property
    def reason_code(self) -> str | None:
        """The ``reasonCode`` of the 403 body (e.g. ``missing-permissions``)."""
        value = (self.body or {}).get("reasonCode")
        return str(value) if value is not None else None

    @property
    def security(self) -> dict[str, Any]:
        """The ``security`` object of the 403 body."""
        value = (self.body or {}).get("security")
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def timestamp(self) -> str | None:
        """The ``timestamp`` of the 403 body, as sent; None when absent (optional since API 2.9.0)."""
        value = (self.body or {}).get("timestamp")
        return value if isinstance(value, str) else None


class NotFoundError(ApiError):
    """HTTP 404."""


class GoneError(ApiError):
    """HTTP 410: the operation's retention period is over."""


class RateLimitedError(ApiError):
    """HTTP 429; ``retry_after`` is the server's wait in seconds, when given; ``group`` the limit group, when known."""

    def __init__(self, *args: Any, retry_after: float | None = None, group: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after
        self.group = group


class RateLimitWaitExceededError(RateLimitedError):
    """The local limiter would make a call wait longer than its ``max_wait``: nothing was sent.

    ``retry_after`` is the limiter's estimate of the wait in seconds (a lower bound when others are queued ahead;
    exact otherwise) and ``group`` the limit group, so a web handler can answer its own caller with Retry-After.
    """

    def __init__(self, group: str, retry_after: float, max_wait: float) -> None:
        super().__init__(429, retry_after=retry_after, group=group)
        self.max_wait = max_wait
        message = (
            f"rate limit group {group!r}: the limiter would wait {retry_after:.1f} s, more than max_wait"
            f" {max_wait:g} s; nothing was sent, retry after {retry_after:.1f} s"
        )
        self.args = (message,)


class ServerError(ApiError):
    """HTTP 5xx."""


class OperationFailedError(KsefError):
    """An asynchronous KSeF operation ended in a failure status."""

    def __init__(
        self,
        code: int,
        description: str,
        details: Sequence[str] = (),
        *,
        reference_number: str | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.details = list(details)
        self.reference_number = reference_number
        ref = f" ({reference_number})" if reference_number else ""
        extra = f": {'; '.join(self.details)}" if self.details else ""
        super().__init__(f"{type(self).__name__.removesuffix('Error')}{ref}: [{code}] {description}{extra}")


class AuthenticationFailedError(OperationFailedError):
    """Authentication (GET /auth/{referenceNumber}) ended with a failure code."""


class SessionFailedError(OperationFailedError):
    """A session ended with a failure code."""


class ExportFailedError(OperationFailedError):
    """An invoice export ended with a failure code."""


_STATUS_CLASSES: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    410: GoneError,
    429: RateLimitedError,
}


# 400s whose exception code has its own class (first match in the body wins). The technical-correction codes are
# not here: they need the file name, which only the caller knows.
_CODE_CLASSES: dict[int, type[BadRequestError]] = {
    ExceptionCode.UNREADABLE_CONTENT: UnreadableContentError,
    ExceptionCode.SESSION_TEMPORARILY_UNAVAILABLE: SessionTemporarilyUnavailableError,
    ExceptionCode.COLLECTIVE_INVOICE_NOT_FOUND: InvoiceNotFoundError,
    ExceptionCode.COLLECTIVE_IDENTIFIER_CAP: CollectiveIdentifierCapError,
    ExceptionCode.DIFFERENT_SELLERS: DifferentSellersError,
    ExceptionCode.DUPLICATE_KSEF_NUMBER: DuplicateKsefNumberError,
}


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value if v is not None)
    return ()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_body(body: Mapping[str, Any]) -> tuple[list[ApiErrorDetail], str | None, str | None, str | None]:
    """Read errors, title, reference number and trace id from any of KSeF's error body shapes."""
    errors: list[ApiErrorDetail] = []
    title = body.get("title") if isinstance(body.get("title"), str) else None
    trace_id = body.get("traceId") if isinstance(body.get("traceId"), str) else None
    reference = None
    exception = body.get("exception")
    if isinstance(exception, Mapping):  # default ExceptionResponse
        reference = exception.get("referenceNumber")
        errors.extend(
            ApiErrorDetail(
                _int_or_none(item.get("exceptionCode")),
                str(item.get("exceptionDescription") or ""),
                _str_list(item.get("details")),
            )
            for item in exception.get("exceptionDetailList") or []
            if isinstance(item, Mapping)
        )
    errors.extend(  # problem+json (BadRequestProblemDetails)
        ApiErrorDetail(
            _int_or_none(item.get("code")), str(item.get("description") or ""), _str_list(item.get("details"))
        )
        for item in body.get("errors") or []
        if isinstance(item, Mapping)
    )
    status = body.get("status")
    if isinstance(status, Mapping):  # TooManyRequestsResponse {"status": {code, description, details}}
        errors.append(
            ApiErrorDetail(
                _int_or_none(status.get("code")),
                str(status.get("description") or ""),
                _str_list(status.get("details")),
            )
        )
    if not errors and isinstance(body.get("detail"), str):
        errors.append(ApiErrorDetail(None, body["detail"]))
    return errors, title, str(reference) if reference else None, trace_id


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: integer seconds (KSeF's form) or an HTTP date.

    Args:
        value: The header value, or None.
        now: The current Unix time, for HTTP dates; defaults to ``time.time()``.

    Returns:
        The wait in seconds (never negative), or None when absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    import email.utils  # noqa: PLC0415 - only for the rare HTTP-date form
    import time  # noqa: PLC0415

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def api_error_from_response(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    *,
    retry_after: str | None = None,
    operation: str | None = None,
) -> ApiError:
    """Build the matching `ApiError` subclass from an HTTP status and its (JSON or not) body."""
    parsed: Mapping[str, Any] | None
    if isinstance(body, Mapping):
        parsed = body
    else:
        try:
            loaded = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            loaded = None
        parsed = loaded if isinstance(loaded, Mapping) else None
    errors, title, reference, trace_id = _parse_body(parsed) if parsed is not None else ([], None, None, None)
    if parsed is None and body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        errors = [ApiErrorDetail(None, redact_server_text(text))]
    cls = _STATUS_CLASSES.get(status, ServerError if status >= 500 else ApiError)  # noqa: PLR2004
    if cls is BadRequestError:
        cls = next((_CODE_CLASSES[e.code] for e in errors if e.code in _CODE_CLASSES), cls)
    kwargs: dict[str, Any] = {
        "title": title,
        "reference_number": reference,
        "trace_id": trace_id,
        "operation": operation,
        "body": parsed,
    }
    if cls is RateLimitedError:
        return RateLimitedError(status, errors, retry_after=parse_retry_after(retry_after), **kwargs)
    return cls(status, errors, **kwargs)
