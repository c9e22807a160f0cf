"""`task_group`: a failed group does not leave the caller "cancelling" (Python 3.11's TaskGroup does)."""

from __future__ import annotations

import asyncio

import pytest

from ksef_async._aio import task_group


async def _fail() -> None:
    await asyncio.sleep(0)
    raise ValueError("child failed")


async def _failing_group() -> None:
    async with task_group() as group:
        group.create_task(_fail())  # the caller reaches __aexit__ first, then the child fails


def test_a_failed_group_leaves_the_caller_not_cancelling() -> None:
    async def main() -> list[int]:
        counts = []
        for _ in range(3):
            with pytest.raises(ExceptionGroup):
                await _failing_group()
            task = asyncio.current_task()
            assert task is not None
            counts.append(task.cancelling())
        await asyncio.sleep(0)  # no stale cancellation is delivered here
        return counts

    assert asyncio.run(main()) == [0, 0, 0]


def test_a_genuine_cancel_of_the_caller_still_propagates() -> None:
    async def main() -> None:
        async def stuck() -> None:
            async with task_group() as group:
                group.create_task(asyncio.sleep(60))

        outer = asyncio.create_task(stuck())
        await asyncio.sleep(0.01)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert outer.cancelled()

    asyncio.run(main())
