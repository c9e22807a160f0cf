"""`task_group`: an `asyncio.TaskGroup` that leaves the calling task's cancellation state as it found it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["task_group"]


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """Yield an `asyncio.TaskGroup`; when it ends with an error, the caller's task is not left "cancelling".

    On Python 3.11, a group whose child fails while the caller already waits in ``__aexit__`` cancels the caller
    and never uncancels it: ``asyncio.current_task().cancelling()`` stays raised by one per failed group (fixed in
    3.12). Code that later runs in that task takes the stale count for a pending cancellation: anyio before 4.7
    (our floor is 4.4) then hangs or cancels at its next checkpoint. Requests the group made are withdrawn here
    unless a cancellation is what propagates (a genuine cancel stays a cancel).
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except asyncio.CancelledError:
        raise
    except BaseException:
        while task is not None and task.cancelling() > before:
            task.uncancel()
        raise
