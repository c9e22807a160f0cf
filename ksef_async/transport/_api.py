"""The API transport: one pooled aiohttp session that adds auth, rate limiting, retries and error mapping.

Every request goes through `ApiTransport.request`, in this order:

0. while KSeF is unreachable (a connection could not be made), wait for the one probe at a time
   (`ksef_async.transport._reach.Reachability`) instead of retrying on one's own;
1. get the ``Authorization`` value (the access token from the `TokenSource`, logging in or refreshing first when
   needed, or the explicit token the caller passes for operations that take the authentication or refresh
   token): authentication happens before admission, never while holding a slot;
2. wait for the operation's rate-limit group on the shared limiter (once per attempt: KSeF counts every attempt),
   and for ``global`` (per IP address) after it, at most ``max_limiter_wait`` seconds
   (`ksef_async.ratelimit.limiter_wait` overrides it per call): a longer wait raises
   `RateLimitWaitExceededError` before anything is sent; after a wait the token is read again (a 401 seen by
   another call meanwhile has renewed it);
3. send; convert aiohttp's exceptions to `ksef_async.errors` here, at one boundary; an attempt that could not
   connect (nothing reached KSeF) and one answered 401 (KSeF counts it against no context) give their limiter
   slot back;
4. on 429: pause the group for ``Retry-After`` (the group the body names, e.g. ``global``, else the operation's)
   and try again, up to ``max_rate_limit_retries``;
5. on 401 with an access token: let the token source refresh once, and try once more;
6. on a connection error, timeout or 5xx: an idempotent call is retried with jittered exponential back-off
   (stamina; each retry is logged at INFO with its reason, giving up at WARNING); a call that may have taken
   effect raises `AmbiguousRequestError` instead. A failure to connect is retried for every call (nothing reached
   KSeF), through the reachability probe of step 0, for at most ``RetryPolicy.timeout`` seconds.

Cancellation of `ApiTransport.request`: before the request is written, nothing happened (a limiter slot already
taken stays taken: the safe side); after, the call may or may not have taken effect, exactly as with a lost
connection.

Tests make stamina's back-off instant with ``stamina.set_testing(True, attempts=N)``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from collections.abc import Mapping
from http import HTTPStatus
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
    RateLimitWaitExceededError,
    ServerError,
    TransportError,
    UnauthorizedError,
    api_error_from_response,
)
from ksef_async.operations import Operation, TokenKind
from ksef_async.ratelimit import Admission, RateLimiter, current_limiter_wait
from ksef_async.transport._limits import MAX_API_BODY, MAX_ERROR_BODY, check_retry_after, read_limited
from ksef_async.transport._reach import Reachability

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
        self.max_limiter_wait: float | None = None
        """Longest limiter wait of a call (``ClientConfig.max_limiter_wait``); `limiter_wait` overrides it."""
        self.reachability = Reachability()
        """Whether KSeF accepts connections; one probe at a time while it does not."""

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

        Cancellation: before the request is written (waiting for reachability, the token or the limiter), nothing
        was sent; afterwards the call may or may not have taken effect, as with a lost connection.
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
                if isinstance(exc, RateLimitWaitExceededError):
                    raise  # the local limiter's refusal: nothing was sent
                await self._after_429(exc, op, rate_retries, reference_number)
                rate_retries += 1
            except _UnauthorizedWithGeneration as exc:
                if auth_retried or self.tokens is None:
                    raise exc.error from None
                auth_retried = True
                logger.info(
                    "401 from KSeF on %s, refreshing the access token once",
                    op.operation_id,
                    extra=extras(operation=op.operation_id, reference_number=reference_number),
                )
                await self.tokens.on_unauthorized(exc.generation)

    async def _after_429(
        self, exc: RateLimitedError, op: Operation, rate_retries: int, reference_number: str | None
    ) -> None:
        """Pause the group KSeF named for its ``Retry-After``; re-raise when the 429 retries are used up."""
        check_retry_after(exc, op.operation_id)
        texts = [text for e in exc.errors for text in (e.description, *e.details)]
        group = rate_limited_group(op.rate_group, texts, self.limiter.limits)
        exc.group = group
        telemetry.rate_limited(group)
        await self.limiter.on_rate_limited(group, exc.retry_after)
        if rate_retries >= self.retry.max_rate_limit_retries:
            raise exc
        telemetry.retried(op.operation_id, "rate_limited")
        logger.warning(
            "429 from KSeF on %s (group %s), retry %d after %s s",
            op.operation_id,
            group,
            rate_retries + 1,
            exc.retry_after,
            extra=extras(
                operation=op.operation_id,
                group=group,
                retry_after=exc.retry_after,
                attempt=rate_retries + 1,
                reference_number=reference_number,
            ),
        )

    async def _send_retrying(self, call: _Call) -> ApiResponse:
        """Send with stamina's retries; while KSeF is unreachable, wait for the probe (bounded by ``timeout``)."""
        policy = self.retry
        clock = time.monotonic
        deadline = clock() + policy.timeout if policy.timeout else None
        while True:
            probe = await self.reachability.turn(deadline, call.op.operation_id)
            try:
                return await self._send_with_backoff(call, probe)
            except _UnreachableError as exc:
                if deadline is not None and clock() >= deadline:
                    logger.warning(
                        "giving up %s: KSeF unreachable for %.1f s",
                        call.op.operation_id,
                        policy.timeout,
                        extra=extras(operation=call.op.operation_id, reference_number=call.reference_number),
                    )
                    # The same error as a call that gives up waiting for the probe: the connection attempt that
                    # failed merely ended after the deadline.
                    raise self.reachability.gave_up(call.op.operation_id) from exc.__cause__

    async def _send_with_backoff(self, call: _Call, probe: bool) -> ApiResponse:
        policy = self.retry
        name = call.op.operation_id
        last: KsefError | None = None
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
                            "retrying %s (attempt %d of %d) after: %s",
                            name,
                            attempt.num,
                            policy.attempts,
                            last,
                            extra=extras(operation=name, attempt=attempt.num, reference_number=call.reference_number),
                        )
                    try:
                        return await self._send_once(call, probe=probe and attempt.num == 1)
                    except _RetryableError as exc:
                        last = exc.error
                        raise
        except _RetryableError as exc:
            logger.warning(
                "giving up %s after %d attempts: %s",
                name,
                policy.attempts,
                exc.error,
                extra=extras(operation=name, reference_number=call.reference_number),
            )
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

    def _headers(self, call: _Call, authorization: str | None) -> CIMultiDict[str]:
        headers = CIMultiDict(call.headers)
        if authorization is not None:
            headers["Authorization"] = authorization
        if self.test_system_warning:
            headers[TEST_SYSTEM_WARNING_HEADER] = self.test_system_warning
        return headers

    async def _send_once(self, call: _Call, *, probe: bool = False) -> ApiResponse:
        op = call.op
        started = time.monotonic()
        log = extras(operation=op.operation_id, group=op.rate_group, reference_number=call.reference_number)
        state = {"resolved": False}
        try:
            authorization, generation = await self._authorization(call)
            admission = await self.limiter.admit(
                op.rate_group, max_wait=current_limiter_wait(self.max_limiter_wait), pending=True
            )
            telemetry.limiter_waited(op.rate_group, admission.waited)
            try:
                if admission.waited > 0 and generation is not None:
                    # Another call may have renewed the token while this one waited (no I/O when it is still valid).
                    authorization, generation = await self._authorization(call)
                headers = self._headers(call, authorization)
            except BaseException:
                await self._give_back(admission)  # nothing was sent
                raise
            refund_401 = generation is not None
            status, resp_headers, body = await self._exchange(call, headers, admission, probe, state, refund_401)
        finally:
            if probe and not state["resolved"]:
                self.reachability.abandoned()
        self._surface_system_warning(resp_headers, call)
        waited = admission.waited
        logger.debug(
            "KSeF call %s: HTTP %d (waited %.3f s)",
            op.operation_id,
            status,
            waited,
            extra=log | extras(status=status, waited=round(waited, 6), elapsed=round(time.monotonic() - started, 6)),
        )
        if 200 <= status < 300:  # noqa: PLR2004
            return ApiResponse(status, resp_headers, body)
        error = api_error_from_response(
            status, body, retry_after=resp_headers.get("Retry-After"), operation=op.operation_id
        )
        logger.debug(
            "KSeF error on %s: HTTP %d %s",
            op.operation_id,
            status,
            error.codes,
            extra=log | extras(status=status, codes=error.codes),
        )
        if isinstance(error, UnauthorizedError) and generation is not None:
            raise _UnauthorizedWithGeneration(error, generation)  # its slot was given back above
        if isinstance(error, ServerError):
            if call.idempotent:
                raise _RetryableError(error)
            raise AmbiguousRequestError(
                f"{op.operation_id}: KSeF answered HTTP {status}; the request may have taken effect, "
                "check its state before repeating it"
            ) from error
        raise error

    async def _exchange(  # noqa: PLR0917 - one private call site
        self,
        call: _Call,
        headers: CIMultiDict[str],
        admission: Admission,
        probe: bool,
        state: dict[str, bool],
        refund_401: bool,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """Send the request and read the answer; settle or give back its (pending) admission.

        A failed connection gives the slot back and marks KSeF unreachable; so does a 401 when ``refund_401`` (KSeF
        counts a refused token against no context). Anything else settles the slot: the request counts from now.
        """
        op = call.op
        log = extras(operation=op.operation_id, group=op.rate_group, reference_number=call.reference_number)
        try:
            async with self._session.request(
                op.method, call.url, params=call.params, data=call.data, headers=headers
            ) as response:
                self.reachability.succeeded()
                state["resolved"] = True
                status = response.status
                limit = MAX_API_BODY if 200 <= status < 300 else MAX_ERROR_BODY  # noqa: PLR2004
                body = await read_limited(response, limit, op.operation_id)
                answer = status, response.headers, body
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Nothing reached KSeF: the slot goes back, and the call waits for the reachability probe.
            await self._give_back(admission)
            self.reachability.failed(probe=probe)
            state["resolved"] = True
            logger.warning("cannot connect to KSeF for %s (%s)", op.operation_id, type(exc).__name__, extra=log)
            raise _UnreachableError from exc
        except BaseException as exc:
            await self._settle(admission)  # sent, perhaps received (or cancelled meanwhile): it counts from now
            if isinstance(exc, aiohttp.ClientError | TimeoutError):
                raise self._no_answer(call, exc, log) from exc
            raise
        if status == HTTPStatus.UNAUTHORIZED and refund_401:
            await self._give_back(admission)
        else:
            await self._settle(admission)
        return answer

    async def _settle(self, admission: Admission) -> None:
        """Settle ``admission`` (its answer came, or the send failed after it left); a failing backend costs nothing.

        Unsettled, the request would count as arriving at its bound: the safe side.
        """
        try:
            await self.limiter.settle(admission)
        except Exception:  # noqa: BLE001 - a shared store's failure must not hide the request's own outcome
            logger.warning("could not settle a rate limit slot", extra=extras(group=admission.group))

    async def _give_back(self, admission: Admission) -> None:
        """Release ``admission`` (its request did not count at KSeF); a failing backend only costs the slot."""
        try:
            await self.limiter.release(admission)
        except Exception:  # noqa: BLE001 - a shared store's failure must not hide the request's own error
            logger.warning("could not give a rate limit slot back", extra=extras(group=admission.group))

    @staticmethod
    def _no_answer(call: _Call, exc: BaseException, log: dict[str, Any]) -> Exception:
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        name = call.op.operation_id
        if call.idempotent:
            logger.warning("no answer from KSeF to %s (%s)", name, kind, extra=log)
            return _RetryableError(TransportError(f"{name}: no answer from KSeF ({kind})"))
        logger.warning("no answer from KSeF to %s (%s); it may have taken effect", name, kind, extra=log)
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


class _UnreachableError(Exception):
    """Internal: no connection could be made (nothing reached KSeF); the call waits for the reachability probe."""


class _UnauthorizedWithGeneration(Exception):  # noqa: N818 - internal signal, never escapes the transport
    def __init__(self, error: ApiError, generation: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.generation = generation
