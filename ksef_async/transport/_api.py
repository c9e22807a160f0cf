"""The API transport: one pooled aiohttp session that adds auth, rate limiting, retries and error mapping.

Every request goes through `ApiTransport.request`, in this order:

1. wait for the operation's rate-limit group on the shared limiter (once per attempt: KSeF counts every attempt),
   and for ``global`` (per IP address) after it;
2. attach ``Authorization`` (the access token from the `TokenSource`, or the explicit token the caller passes for
   operations that take the authentication or refresh token) and ``X-Error-Format: problem-details``;
3. send; convert aiohttp's exceptions to `ksef_async.errors` here, at one boundary;
4. on 429: pause the group for ``Retry-After`` (the group the body names, e.g. ``global``, else the operation's)
   and try again, up to ``max_rate_limit_retries``;
5. on 401 with an access token: let the token source refresh once, and try once more;
6. on a connection error, timeout or 5xx: an idempotent call is retried with jittered exponential back-off
   (stamina); a call that may have taken effect raises `AmbiguousRequestError` instead. A failure to connect is
   retried for every call: nothing reached KSeF.

Tests make stamina's back-off instant with ``stamina.set_testing(True, attempts=N)``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import attrs
import stamina
from multidict import CIMultiDict, CIMultiDictProxy

from ksef_async import _telemetry as telemetry
from ksef_async._logging import extras, get_logger
from ksef_async.core.ratelimit_groups import rate_limited_group
from ksef_async.core.redact import redact_text
from ksef_async.core.system_warnings import (
    SYSTEM_WARNING_HEADER,
    TEST_SYSTEM_WARNING_HEADER,
    SystemWarningHandler,
    SystemWarningLog,
    warnings_from_header,
)
from ksef_async.core.validators import at_least_one, non_negative
from ksef_async.errors import (
    AmbiguousRequestError,
    ApiError,
    ConfigurationError,
    KsefError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnauthorizedError,
    api_error_from_response,
)
from ksef_async.operations import Operation, TokenKind
from ksef_async.ratelimit import RateLimiter
from ksef_async.transport._limits import MAX_API_BODY, MAX_ERROR_BODY, check_retry_after, read_limited

__all__ = [
    "SAFE_POSTS",
    "ApiResponse",
    "ApiTransport",
    "KsefSystemWarning",
    "RetryPolicy",
    "TokenSource",
]

logger = get_logger("transport")

SAFE_POSTS = frozenset(
    {
        "post_auth_challenge",  # issues a fresh challenge; an extra one is harmless
        "post_invoices_query_metadata",  # a query, documented as a read
    }
)
"""POST operations without side effects worth protecting: retried like GETs."""

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})


class KsefSystemWarning(UserWarning):
    """KSeF sent an ``X-System-Warning`` header: a notice that does not change the result of the call."""


class TokenSource(Protocol):
    """Supplies the access token and reacts to a 401 (implemented by `ksef_async.auth.Authenticator`)."""

    async def access_token(self) -> tuple[str, int]:
        """Return a usable access token and its generation number."""
        ...

    async def on_unauthorized(self, generation: int) -> None:
        """Handle a 401 for the token of ``generation``: refresh it unless somebody already did."""
        ...


@attrs.frozen
class RetryPolicy:
    """Retries of idempotent calls (stamina) and of rate-limited calls.

    Attributes:
        attempts: Tries of an idempotent call on connection errors, timeouts and 5xx, the first included
            (default 5).
        timeout: Give up retrying an idempotent call after this many seconds in total (default 60).
        wait_initial: First back-off wait in seconds (default 0.5).
        wait_max: Longest back-off wait in seconds (default 10).
        wait_jitter: Random extra wait of up to this many seconds (default 1).
        max_rate_limit_retries: Retries after a 429, each after the pause KSeF asked for (default 3). The limiter
            makes 429s rare; a persistent one means another client shares the context and IP.
    """

    attempts: int = attrs.field(default=5, validator=at_least_one)
    timeout: float = attrs.field(default=60.0, validator=non_negative)
    wait_initial: float = attrs.field(default=0.5, validator=non_negative)
    wait_max: float = attrs.field(default=10.0, validator=non_negative)
    wait_jitter: float = attrs.field(default=1.0, validator=non_negative)
    max_rate_limit_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))


@attrs.frozen
class ApiResponse:
    """A successful API response, read in full."""

    status: int
    headers: CIMultiDictProxy[str] = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)

    def json(self) -> Any:
        """Decode the body as JSON (``None`` for an empty body)."""
        return json.loads(self.body) if self.body else None


@attrs.frozen(kw_only=True)
class _Call:
    """One prepared API call: everything but the Authorization header, which may change between attempts."""

    op: Operation
    url: str
    params: Any
    data: bytes | None = attrs.field(repr=False)
    headers: CIMultiDict[str] = attrs.field(repr=False)
    bearer: str | None = attrs.field(repr=False)
    idempotent: bool
    reference_number: str | None


class _RetryableError(Exception):
    """Internal: wraps a failure that an idempotent call may retry (connection error, timeout, 5xx)."""

    def __init__(self, error: KsefError) -> None:
        super().__init__(str(error))
        self.error = error


def _is_retryable(exc: Exception) -> bool:
    return isinstance(exc, _RetryableError)


class ApiTransport:
    """Sends KSeF API operations over one pooled aiohttp session.

    Args:
        base_url: The API base, e.g. ``https://api-test.ksef.mf.gov.pl/v2`` (no trailing slash needed).
        session: The pooled API session (owned by the caller); ``None`` until the owner opens one and `bind` s it.
        limiter: The shared rate limiter of the (environment, context) pair.
        retry: Retry policy.
        tokens: Where the access token comes from; None for a transport used only for public operations.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession | None,
        limiter: RateLimiter,
        retry: RetryPolicy,
        tokens: TokenSource | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._bound = session
        self.limiter = limiter
        self.retry = retry
        self.tokens = tokens
        self.system_warnings = SystemWarningLog()
        """Every ``X-System-Warning`` received: counters, the latest ones, recorders (set by `KsefClient`)."""
        self.on_system_warning: SystemWarningHandler | None = None
        """The application's callback for each warning (``ClientConfig.on_system_warning``)."""
        self.test_system_warning: str | None = None
        """Sent as ``X-Test-System-Warning`` on every request (TEST and simulators only; checked by `KsefClient`)."""

    def __repr__(self) -> str:
        return f"ApiTransport(base_url={self.base_url!r})"

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._bound is None:
            raise ConfigurationError("the client is not open: use 'async with KsefClient(...)'")
        return self._bound

    def bind(self, session: aiohttp.ClientSession | None) -> None:
        """Send through ``session`` from now on (``None``: its owner closed it, and calls raise until rebound)."""
        self._bound = session

    def url_for(self, op: Operation, path_params: Mapping[str, str]) -> str:
        """Return the absolute URL of ``op`` with its path parameters filled in (percent-encoded)."""
        missing = [name for name in op.path_params if name not in path_params]
        if missing:
            raise ConfigurationError(f"{op.operation_id}: missing path parameter(s) {', '.join(missing)}")
        path = op.path
        for name in op.path_params:
            path = path.replace("{" + name + "}", quote(str(path_params[name]), safe=""))
        return self.base_url + path

    async def request(
        self,
        op: Operation,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | list[tuple[str, str | int]] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        bearer: str | None = None,
        idempotent: bool | None = None,
        reference_number: str | None = None,
    ) -> ApiResponse:
        """Send one API operation and return its successful response.

        Args:
            op: The operation (from `ksef_async.operations.operation`).
            path_params: Values of the templated path segments.
            params: Query parameters (a list of pairs repeats a name).
            json_body: A JSON-ready body (already unstructured).
            content: A raw body (e.g. the signed XML), with ``content_type``.
            content_type: The ``Content-Type`` of ``content``.
            headers: Extra request headers (e.g. ``x-continuation-token``).
            bearer: The token for an operation that does not take the access token (authentication or refresh
                token); ignored otherwise.
            idempotent: Override whether the call may be retried blindly; by default GET/DELETE and `SAFE_POSTS`.
            reference_number: Reference number for log records.

        Raises:
            ApiError: KSeF answered with an error status (subclass by status).
            RateLimitedError: Still 429 after ``max_rate_limit_retries`` retries.
            TransportError: No answer (idempotent calls: after the retries).
            AmbiguousRequestError: A call that may have taken effect got no clear answer (connection lost after
                sending, timeout, or 5xx); check the state before repeating it.
        """
        self._session  # noqa: B018 - raises ConfigurationError before a token or a rate-limit slot is taken
        if idempotent is None:
            idempotent = op.method in _IDEMPOTENT_METHODS or op.operation_id in SAFE_POSTS
        headers_out = CIMultiDict({"X-Error-Format": "problem-details", "Accept": "application/json"})
        if headers:
            headers_out.update(headers)
        data: bytes | None = None
        if content is not None:
            data = content
            headers_out["Content-Type"] = content_type or "application/octet-stream"
        elif json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            headers_out["Content-Type"] = "application/json"
        call = _Call(
            op=op,
            url=self.url_for(op, path_params or {}),
            params=params,
            data=data,
            headers=headers_out,
            bearer=bearer,
            idempotent=idempotent,
            reference_number=reference_number,
        )
        rate_retries = 0
        auth_retried = False
        while True:
            try:
                # Non-idempotent calls go through the same loop: only "cannot connect" (nothing was sent) is
                # retryable for them; their other failures raise AmbiguousRequestError, which is not.
                return await telemetry.api_call(op, reference_number, self._send_retrying(call))
            except RateLimitedError as exc:
                check_retry_after(exc, op.operation_id)
                texts = [text for e in exc.errors for text in (e.description, *e.details)]
                group = rate_limited_group(op.rate_group, texts, self.limiter.limits)
                telemetry.rate_limited(group)
                await self.limiter.on_rate_limited(group, exc.retry_after)
                if rate_retries >= self.retry.max_rate_limit_retries:
                    raise
                rate_retries += 1
                telemetry.retried(op.operation_id, "rate_limited")
                logger.warning(
                    "429 from KSeF, retrying after the pause",
                    extra=extras(
                        operation=op.operation_id,
                        group=group,
                        retry_after=exc.retry_after,
                        attempt=rate_retries,
                        reference_number=reference_number,
                    ),
                )
            except _UnauthorizedWithGeneration as exc:
                if auth_retried or self.tokens is None:
                    raise exc.error from None
                auth_retried = True
                logger.info(
                    "401 from KSeF, refreshing the access token once",
                    extra=extras(operation=op.operation_id, reference_number=reference_number),
                )
                await self.tokens.on_unauthorized(exc.generation)

    async def _send_retrying(self, call: _Call) -> ApiResponse:
        policy = self.retry
        try:
            async for attempt in stamina.retry_context(
                on=_is_retryable,
                attempts=policy.attempts,
                timeout=policy.timeout or None,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    if attempt.num > 1:
                        telemetry.retried(call.op.operation_id)
                        logger.info(
                            "retrying a call",
                            extra=extras(operation=call.op.operation_id, attempt=attempt.num),
                        )
                    return await self._send_once(call)
        except _RetryableError as exc:
            raise exc.error from exc.__cause__
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _authorization(self, call: _Call) -> tuple[str | None, int | None]:
        """Return the ``Authorization`` value for ``call`` and the access token's generation (if one is used)."""
        op = call.op
        if not op.tokens:
            return None, None
        if TokenKind.ACCESS in op.tokens and call.bearer is None:
            if self.tokens is None:
                raise ConfigurationError(f"{op.operation_id} needs an access token: give the client credentials")
            token, generation = await self.tokens.access_token()
            return f"Bearer {token}", generation
        if not call.bearer:
            raise ConfigurationError(f"{op.operation_id} needs a bearer token")
        return f"Bearer {call.bearer}", None

    async def _send_once(self, call: _Call) -> ApiResponse:
        op = call.op
        authorization, generation = await self._authorization(call)
        headers = CIMultiDict(call.headers)
        if authorization is not None:
            headers["Authorization"] = authorization
        if self.test_system_warning:
            headers[TEST_SYSTEM_WARNING_HEADER] = self.test_system_warning
        waited = await self.limiter.acquire(op.rate_group)
        telemetry.limiter_waited(op.rate_group, waited)
        started = time.monotonic()
        log = extras(operation=op.operation_id, group=op.rate_group, reference_number=call.reference_number)
        try:
            async with self._session.request(
                op.method, call.url, params=call.params, data=call.data, headers=headers
            ) as response:
                status = response.status
                limit = MAX_API_BODY if 200 <= status < 300 else MAX_ERROR_BODY  # noqa: PLR2004
                body = await read_limited(response, limit, op.operation_id)
                resp_headers = response.headers
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Nothing reached KSeF: any call may be repeated.
            logger.warning("cannot connect", extra=log)
            failure = TransportError(f"{op.operation_id}: cannot connect to KSeF ({type(exc).__name__})")
            raise _RetryableError(failure) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._no_answer(call, exc, log) from exc
        self._surface_system_warning(resp_headers, call)
        logger.debug(
            "KSeF call",
            extra=log | extras(status=status, waited=round(waited, 6), elapsed=round(time.monotonic() - started, 6)),
        )
        if 200 <= status < 300:  # noqa: PLR2004
            return ApiResponse(status, resp_headers, body)
        error = api_error_from_response(
            status, body, retry_after=resp_headers.get("Retry-After"), operation=op.operation_id
        )
        logger.debug("KSeF error", extra=log | extras(status=status, codes=error.codes))
        if isinstance(error, UnauthorizedError) and generation is not None:
            raise _UnauthorizedWithGeneration(error, generation)
        if isinstance(error, ServerError):
            if call.idempotent:
                raise _RetryableError(error)
            raise AmbiguousRequestError(
                f"{op.operation_id}: KSeF answered HTTP {status}; the request may have taken effect, "
                "check its state before repeating it"
            ) from error
        raise error

    @staticmethod
    def _no_answer(call: _Call, exc: BaseException, log: dict[str, Any]) -> Exception:
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        name = call.op.operation_id
        if call.idempotent:
            logger.warning("no answer", extra=log)
            return _RetryableError(TransportError(f"{name}: no answer from KSeF ({kind})"))
        logger.warning("no answer to a call that may have taken effect", extra=log)
        return AmbiguousRequestError(
            f"{name}: no answer from KSeF ({kind}); the request may have taken effect, check its state before "
            "repeating it"
        )

    def _surface_system_warning(self, headers: CIMultiDictProxy[str], call: _Call) -> None:
        """Count, record and hand over ``X-System-Warning``; log (and `warnings.warn`) each distinct text once."""
        values = headers.getall(SYSTEM_WARNING_HEADER, [])
        for value in values:
            if not value.strip():
                continue
            found = warnings_from_header(
                value,
                operation=call.op.operation_id,
                time=dt.datetime.now(dt.UTC),
                method=call.op.method,
                reference_number=call.reference_number,
            )
            if self.system_warnings.record(found, found[0].raw):
                logger.warning(
                    "KSeF system warning: %s",
                    redact_text(found[0].raw),
                    extra=extras(
                        operation=call.op.operation_id,
                        method=call.op.method,
                        reference_number=call.reference_number,
                        codes=[w.code for w in found],
                    ),
                )
                warnings.warn(KsefSystemWarning(f"{call.op.operation_id}: {found[0].raw}"), stacklevel=4)
            handler = self.on_system_warning
            if handler is None:
                continue
            for warning in found:
                try:
                    handler(warning)
                except Exception:  # noqa: BLE001 - a warning must never fail the call
                    logger.warning(
                        "the on_system_warning callback raised", extra=extras(operation=call.op.operation_id)
                    )


class _UnauthorizedWithGeneration(Exception):  # noqa: N818 - internal signal, never escapes the transport
    def __init__(self, error: ApiError, generation: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.generation = generation
