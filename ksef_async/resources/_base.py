"""What every resource shares: the transports, a call-and-structure helper, continuation-token paging, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs

from ksef_async._logging import extras, get_logger
from ksef_async.core.paging import PageGuard
from ksef_async.core.polling import Backoff, PollSchedule
from ksef_async.core.system_warnings import SystemWarningLog
from ksef_async.errors import DeadlineExceededError, ResponseFormatError
from ksef_async.models.converter import structure
from ksef_async.operations import operation
from ksef_async.transport import ApiResponse, ApiTransport, StorageTransport

__all__ = ["CONTINUATION_HEADER", "Resource", "decode_json", "poll_until", "structure_response"]

T = TypeVar("T")
P = TypeVar("P")
Params = Mapping[str, str | int] | list[tuple[str, str | int]]
"""Query parameters of one request (a list of pairs repeats a name)."""

CONTINUATION_HEADER = "x-continuation-token"
"""Request header that asks for the page after the one whose body carried this ``continuationToken``."""

logger = get_logger("polling")

# What structuring raises when a hook meets a value it cannot take outside cattrs' detailed validation.
_STRUCTURE_ERRORS = (TypeError, ValueError, KeyError, AttributeError)


def _reason(exc: BaseException, expected: Any) -> str:
    """Describe why one field failed without its value: exception texts may quote it, and it may be a token."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unexpected fields {sorted(exc.extra_fields)}"  # keys are schema names, not values
    if isinstance(exc, KeyError):
        return "required field missing"
    if expected is None:
        return f"invalid value ({type(exc).__name__})"
    return f"expected {getattr(expected, '__name__', None) or expected}"


def _json_kind(value: Any) -> str:
    """Return the JSON type name of a decoded value."""
    kinds = ((type(None), "null"), (bool, "boolean"), (int | float, "number"), (str, "string"), (list, "array"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "object")


def decode_json(op_id: str, response: ApiResponse) -> Any:
    """Return the JSON body of ``response``.

    Raises:
        ResponseFormatError: The body is not JSON (the decoder's message, which quotes the body, is dropped).
    """
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        pass
    # Raised outside the handler so that the decoder's error is not even kept as __context__.
    raise ResponseFormatError(op_id, ["$: body is not JSON"])


def structure_response(op_id: str, body: Any, model: type[T]) -> T:
    """Return ``body`` structured as ``model``, the response of operation ``op_id``.

    Raises:
        ResponseFormatError: The body does not match the model; it lists each offending ``$.path`` (attribute
            names, as the model spells them) and why, never a value. The cattrs error is not chained for that
            reason: its sub-exceptions quote the values.
    """
    if attrs.has(model) and not isinstance(body, dict):
        # cattrs would index a string or an array by field name and report every field instead.
        raise ResponseFormatError(op_id, [f"$: expected {model.__name__} (an object), got {_json_kind(body)}"])
    try:
        return structure(body, model)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, format_exception=_reason)
    except _STRUCTURE_ERRORS as exc:
        # A hook failed outside detailed validation: its message may quote the value, so only its type is kept.
        problems = [f"invalid value ({type(exc).__name__}) @ $"]
    # transform_error writes "reason @ $.path"; lead with the path, which is what a reader scans for.
    raise ResponseFormatError(
        op_id, [f"{path}: {reason}" for reason, _, path in (p.rpartition(" @ ") for p in problems)]
    )


class Resource:
    """Base of the resources: one API area each, thin (build request, send, structure, raise).

    Args:
        api: The API transport.
        storage: The storage transport (pre-signed URLs).
    """

    def __init__(self, api: ApiTransport, storage: StorageTransport) -> None:
        self._api = api
        self._storage = storage

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def system_warnings(self) -> SystemWarningLog:
        """The ``X-System-Warning`` log of the transport this resource sends through."""
        return self._api.system_warnings

    async def _send(
        self,
        op_id: str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Params | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        bearer: str | None = None,
        idempotent: bool | None = None,
        reference_number: str | None = None,
    ) -> ApiResponse:
        """Send operation ``op_id`` (the arguments are `ApiTransport.request`'s); return the successful response."""
        return await self._api.request(
            operation(op_id),
            path_params=path_params,
            params=params,
            json_body=json_body,
            content=content,
            content_type=content_type,
            headers=headers,
            bearer=bearer,
            idempotent=idempotent,
            reference_number=reference_number,
        )

    async def _get_model(
        self,
        op_id: str,
        model: type[T],
        *,
        path_params: Mapping[str, str] | None = None,
        params: Params | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        bearer: str | None = None,
        idempotent: bool | None = None,
        reference_number: str | None = None,
    ) -> T:
        """Send operation ``op_id`` and return its JSON body structured as ``model``.

        Raises:
            ResponseFormatError: The body is not JSON or does not match ``model`` (a `ProtocolError`).
        """
        response = await self._send(
            op_id,
            path_params=path_params,
            params=params,
            json_body=json_body,
            content=content,
            content_type=content_type,
            headers=headers,
            bearer=bearer,
            idempotent=idempotent,
            reference_number=reference_number,
        )
        return structure_response(op_id, decode_json(op_id, response), model)

    def _structure(self, op_id: str, response: ApiResponse, model: type[T]) -> T:
        """Decode and structure the response of ``op_id`` (for resources that send through `_send` themselves).

        Raises:
            ResponseFormatError: The body is not JSON or does not match ``model``.
        """
        return structure_response(op_id, decode_json(op_id, response), model)

    async def _pages(
        self,
        op_id: str,
        model: type[P],
        *,
        params: Params | None = None,
        path_params: Mapping[str, str] | None = None,
        reference_number: str | None = None,
    ) -> AsyncIterator[P]:
        """Yield every page of a list operation, following ``continuationToken`` (absent or empty: last page)."""
        token: str | None = None
        guard = PageGuard(op_id)
        while True:
            headers = {CONTINUATION_HEADER: token} if token else None
            response = await self._send(
                op_id, params=params, path_params=path_params, headers=headers, reference_number=reference_number
            )
            body = decode_json(op_id, response)
            page = structure_response(op_id, body, model)
            token = body.get("continuationToken") if isinstance(body, dict) else None
            guard.page(has_more=bool(token))
            if token:
                guard.token(str(token))
            yield page
            if not token:
                return


async def poll_until(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    max_wait: float | None,
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Call ``fetch`` until ``done`` accepts its result, waiting by ``backoff`` between calls.

    Args:
        fetch: One status call.
        done: Whether a result is final.
        what: Names the operation in log records and in the error.
        max_wait: Seconds from now after which polling stops; None waits for ever.
        backoff: Waits between calls (default `Backoff()`).
        clock: Monotonic time source.
        sleep: Async sleep (tests inject a fake).

    Raises:
        DeadlineExceededError: The deadline passed before a final result.
    """
    start = clock()
    schedule = PollSchedule(backoff or Backoff(), None if max_wait is None else start + max_wait)
    while True:
        result = await fetch()
        if done(result):
            return result
        delay = schedule.next_delay(clock())
        if delay is None:
            raise DeadlineExceededError(f"{what}: not finished after {clock() - start:.1f} s (deadline {max_wait} s)")
        logger.debug("polling", extra=extras(what=what, attempt=schedule.attempt, delay=round(delay, 3)))
        await sleep(delay)
