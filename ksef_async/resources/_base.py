"""What every resource shares: the transports, a call-and-structure helper, continuation-token paging, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ksef_async._logging import extras, get_logger
from ksef_async.core.polling import Backoff, PollSchedule
from ksef_async.errors import DeadlineExceededError
from ksef_async.models.converter import structure
from ksef_async.operations import operation
from ksef_async.transport import ApiResponse, ApiTransport, StorageTransport

__all__ = ["CONTINUATION_HEADER", "Resource", "poll_until"]

T = TypeVar("T")
P = TypeVar("P")

CONTINUATION_HEADER = "x-continuation-token"
"""Request header that asks for the page after the one whose body carried this ``continuationToken``."""

logger = get_logger("polling")


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

    async def _send(self, op_id: str, **kwargs: Any) -> ApiResponse:
        return await self._api.request(operation(op_id), **kwargs)

    async def _get_model(self, op_id: str, model: type[T], **kwargs: Any) -> T:
        response = await self._send(op_id, **kwargs)
        return structure(response.json(), model)

    async def _pages(
        self,
        op_id: str,
        model: type[P],
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        path_params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[P]:
        """Yield every page of a list operation, following ``continuationToken`` (absent or empty: last page)."""
        token: str | None = None
        while True:
            headers = {CONTINUATION_HEADER: token} if token else None
            response = await self._send(op_id, params=params, path_params=path_params, headers=headers)
            body = response.json()
            yield structure(body, model)
            token = body.get("continuationToken") if isinstance(body, dict) else None
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
