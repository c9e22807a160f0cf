"""Behaviour of the async limiter on virtual time: FIFO, cancellation, 429 pauses, shared instances, logging.

The tests run on `VirtualTimeLoop`: an ordinary asyncio selector loop whose ``time()`` is a counter and whose
selector, asked to block for ``timeout`` seconds, advances the counter by ``timeout`` and polls without blocking.
asyncio computes that timeout from its own timer heap, so virtual time jumps straight to the next due timer, in
the order asyncio itself would run them; ``asyncio.sleep`` and the limiter's default `LoopClock` need no patching.
A loop with nothing scheduled and nothing ready would block forever: the selector raises instead, so a limiter
deadlock fails the test at once. The tests therefore never sleep for real and finish in well under a second.
"""

from __future__ import annotations

import asyncio
import logging
import selectors
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

import ksef_async.ratelimit as rl
from ksef_async.core.ratelimit import PENDING_ARRIVAL_BOUND, WindowLimits
from ksef_async.errors import ConfigurationError, RateLimitWaitExceededError
from ksef_async.ratelimit import DEFAULT_RETRY_AFTER, MemoryBackend, RateLimiter, limiter_for

T = TypeVar("T")


class _InstantSelector(selectors.DefaultSelector):
    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is scheduled")
        if timeout > 0:
            self._advance(timeout)
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = 0.0
        super().__init__(_InstantSelector(self._advance))

    def _advance(self, seconds: float) -> None:
        self._virtual += seconds

    def time(self) -> float:
        return self._virtual


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


async def at(delay: float, coro: Awaitable[T]) -> T:
    await asyncio.sleep(delay)
    return await coro


def limiter(per_second: int | None = 2, per_minute: int | None = None, **groups: WindowLimits) -> RateLimiter:
    return RateLimiter({"g": WindowLimits(per_second, per_minute), **groups}, backend=MemoryBackend(margin=0.0))


def test_virtual_loop_jumps_time_without_sleeping() -> None:
    async def main() -> float:
        await asyncio.sleep(3600)
        return now()

    assert run(main) == 3600.0


def test_uncontended_acquire_returns_at_once() -> None:
    async def main() -> list[float]:
        lim = limiter(per_second=5)
        return [await lim.acquire("g") for _ in range(5)]

    assert run(main) == [0.0] * 5


def test_fifo_order_under_contention() -> None:
    # 40 requests arrive at scattered times against 3/s; admission order must equal arrival order.
    arrivals = [(i * 7919 % 40) / 10 for i in range(40)]
    order = sorted(range(40), key=lambda i: (arrivals[i], i))

    async def main() -> tuple[list[int], list[float]]:
        lim = limiter(per_second=3)
        admitted: list[int] = []
        times: list[float] = []

        async def request(i: int) -> None:
            await asyncio.sleep(arrivals[i])
            await lim.acquire("g")
            admitted.append(i)
            times.append(now())

        async with asyncio.TaskGroup() as tg:
            for i in range(40):
                tg.create_task(request(i))
        return admitted, times

    admitted, times = run(main)
    assert admitted == order
    assert times == sorted(times)
    for start in times:  # never more than 3 in any [t, t+1)
        assert sum(1 for t in times if start <= t < start + 1.0) <= 3


def test_a_later_arrival_never_overtakes_a_waiter_even_when_paused_early() -> None:
    async def main() -> list[str]:
        lim = limiter(per_second=1)
        order: list[str] = []

        async def request(name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            await lim.acquire("g")
            order.append(name)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(request("first", 0.0))
            tg.create_task(request("second", 0.1))  # waits for the window (until 1.0)
            tg.create_task(request("third", 0.5))
            tg.create_task(request("fourth", 0.9))
        return order

    assert run(main) == ["first", "second", "third", "fourth"]


def test_cancelled_head_releases_its_slot_to_the_next_waiter() -> None:
    async def main() -> dict[str, float]:
        lim = limiter(per_second=1)
        done: dict[str, float] = {}

        async def request(name: str) -> None:
            await lim.acquire("g")
            done[name] = now()

        await lim.acquire("g")  # t=0: the window is now full until t=1
        b = asyncio.create_task(request("b"))  # head, asleep until 1.0
        c = asyncio.create_task(request("c"))
        d = asyncio.create_task(request("d"))
        await asyncio.sleep(0.5)
        b.cancel()
        await asyncio.gather(c, d)
        with pytest.raises(asyncio.CancelledError):
            await b
        assert lim.queued("g") == 0
        return done

    # c takes b's slot at 1.0 (b recorded nothing, or c would wait until 2.0); d follows one second later.
    assert run(main) == {"c": 1.0, "d": 2.0}


def test_cancelled_queued_waiter_releases_its_place() -> None:
    async def main() -> dict[str, float]:
        lim = limiter(per_second=1)
        done: dict[str, float] = {}

        async def request(name: str) -> None:
            await lim.acquire("g")
            done[name] = now()

        tasks = {name: asyncio.create_task(request(name)) for name in "abcde"}
        await asyncio.sleep(0.5)
        assert lim.queued("g") == 3  # a admitted, b at the head, c d e queued
        tasks["c"].cancel()
        tasks["d"].cancel()
        await asyncio.gather(tasks["a"], tasks["b"], tasks["e"])
        assert lim.queued("g") == 0
        return done

    assert run(main) == {"a": 0.0, "b": 1.0, "e": 2.0}


def test_waiter_cancelled_as_its_turn_arrives_passes_the_turn_on() -> None:
    async def main() -> dict[str, float]:
        lim = limiter(per_second=1)
        done: dict[str, float] = {}
        tasks: dict[str, asyncio.Task[None]] = {}

        async def request(name: str, victim: str | None = None) -> None:
            await lim.acquire("g")
            done[name] = now()
            if victim is not None:
                # Our hand-over has just resolved the victim's future; cancel it before it can run.
                tasks[victim].cancel()

        await lim.acquire("g")
        tasks["a"] = asyncio.create_task(request("a", victim="b"))  # head until 1.0
        tasks["b"] = asyncio.create_task(request("b"))
        tasks["c"] = asyncio.create_task(request("c"))
        await asyncio.gather(tasks["a"], tasks["c"])
        assert tasks["b"].cancelled()
        return done

    assert run(main) == {"a": 1.0, "c": 2.0}


def test_many_cancellations_leave_no_dead_entries_behind() -> None:
    async def main() -> int:
        lim = limiter(per_second=1)
        await lim.acquire("g")
        head = asyncio.create_task(lim.acquire("g"))
        await asyncio.sleep(0)
        for _ in range(10):
            batch = [asyncio.create_task(lim.acquire("g")) for _ in range(200)]
            await asyncio.sleep(0)
            for task in batch:
                task.cancel()
            await asyncio.gather(*batch, return_exceptions=True)
        size = len(lim._groups["g"].waiters)
        assert await head == 1.0
        return size

    assert run(main) < 400  # compacted: not the 2000 cancelled futures


def test_rate_limited_group_pauses_all_its_waiters_but_not_other_groups() -> None:
    async def main() -> tuple[list[float], float]:
        lim = limiter(per_second=100, other=WindowLimits(100))
        await lim.on_rate_limited("g", 5.0)
        waits = await asyncio.gather(*(lim.acquire("g") for _ in range(4)), at(1.0, lim.acquire("g")))
        other = await lim.acquire("other")
        return list(waits), other

    waits, other = run(main)
    assert waits == [5.0, 5.0, 5.0, 5.0, 4.0]
    assert other == 0.0


def test_pause_during_a_window_wait_extends_it() -> None:
    async def main() -> float:
        lim = limiter(per_second=1)
        await lim.acquire("g")
        waiting = asyncio.create_task(lim.acquire("g"))  # asleep until 1.0
        await asyncio.sleep(0.5)
        await lim.on_rate_limited("g", 3.0)
        return await waiting

    assert run(main) == 3.5


def test_missing_retry_after_uses_the_default() -> None:
    async def main() -> float:
        lim = limiter()
        await lim.on_rate_limited("g", None)
        return await lim.acquire("g")

    assert run(main) == DEFAULT_RETRY_AFTER


def test_update_limits_lowers_with_history_and_raises() -> None:
    async def main() -> list[float]:
        lim = limiter(per_second=10)
        for _ in range(5):
            await lim.acquire("g")
        lim.update_limits({"g": WindowLimits(3)})  # 5 already in this second
        lowered = await lim.acquire("g")
        lim.update_limits({"g": WindowLimits(50)})
        raised = [await lim.acquire("g") for _ in range(20)]
        return [lowered, *raised]

    waits = run(main)
    assert waits[0] == 1.0
    assert waits[1:] == [0.0] * 20


def test_update_limits_rejects_bad_values_without_half_applying() -> None:
    lim = limiter(per_second=5, h=WindowLimits(7))
    with pytest.raises(ConfigurationError, match="'x'"):
        lim.update_limits({"h": WindowLimits(9), "x": {"perSecond": 3}})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="integer >= 1"):
        lim.update_limits({"h": WindowLimits(9), "g": WindowLimits(0)})
    assert lim.limits == {"g": WindowLimits(5), "h": WindowLimits(7)}


def test_unknown_group_is_a_configuration_error() -> None:
    async def main() -> None:
        await limiter().acquire("nope")

    with pytest.raises(ConfigurationError, match="'nope'"):
        run(main)


def test_limiter_for_shares_one_instance_per_environment_and_context() -> None:
    env, ctx = f"test-{uuid.uuid4()}", "nip:5265877635"
    first = limiter_for(env, ctx, {"g": WindowLimits(1)})
    assert limiter_for(env, ctx, {"g": WindowLimits(99)}) is first
    assert first.limits == {"g": WindowLimits(1)}  # limits apply on creation only
    assert limiter_for(env, "nip:1111111111", {"g": WindowLimits(1)}) is not first
    assert limiter_for(f"{env}-other", ctx, {"g": WindowLimits(1)}) is not first

    async def main() -> float:
        # Two "clients" of one context count against the same window.
        await limiter_for(env, ctx, {}).acquire("g")
        return await limiter_for(env, ctx, {}).acquire("g")

    assert run(main) == pytest.approx(1.25)  # default margin: the 1 s window counts as 1.25 s (0.25 s floor)


def test_debug_log_names_the_group_and_the_wait(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        lim = limiter(per_second=1)
        await lim.acquire("g")
        await lim.acquire("g")

    with caplog.at_level(logging.DEBUG, logger="ksef_async.ratelimit"):
        run(main)
    records = [r for r in caplog.records if r.name == "ksef_async.ratelimit"]
    assert len(records) == 1  # the first acquire did not wait: no record
    assert records[0].levelno == logging.DEBUG
    assert (records[0].__dict__["group"], records[0].__dict__["waited"]) == ("g", 1.0)


def test_injected_clock_drives_the_waits() -> None:
    class JumpClock:
        # Valid for one group: only its head ever sleeps, so jumping time forward reorders nothing.
        def __init__(self) -> None:
            self.t = 1000.0
            self.slept: list[float] = []

        def now(self) -> float:
            return self.t

        async def sleep(self, seconds: float) -> None:
            self.slept.append(seconds)
            self.t += seconds
            await asyncio.sleep(0)

    clock = JumpClock()

    async def main() -> list[float]:
        lim = RateLimiter({"g": WindowLimits(2, 3)}, backend=MemoryBackend(margin=0.0), clock=clock)
        return [await lim.acquire("g") for _ in range(4)]

    assert asyncio.run(main()) == [0.0, 0.0, 1.0, 59.0]
    assert clock.slept == [1.0, 59.0]


def test_ten_thousand_queued_waiters_drain_in_order() -> None:
    async def main() -> list[int]:
        lim = limiter(per_second=1000)
        order: list[int] = []

        async def request(i: int) -> None:
            await lim.acquire("g")
            order.append(i)

        async with asyncio.TaskGroup() as tg:
            for i in range(10_000):
                tg.create_task(request(i))
        assert now() == pytest.approx(9.0)  # 1000 per virtual second, the first thousand at once
        return order

    assert run(main) == list(range(10_000))


def test_all_is_sorted_and_complete() -> None:
    # isort-style, as ruff's RUF022 wants it: CONSTANTS, then Classes, then functions, each alphabetical.
    assert rl.__all__ == sorted(rl.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for name in rl.__all__:
        assert hasattr(rl, name)


# -- per-IP groups (2.8+): global for every request, anonymous and global shared by every context --------------


def contexts(**global_and_groups: WindowLimits) -> tuple[RateLimiter, RateLimiter, RateLimiter]:
    """Two context limiters over one per-IP limiter, all without safety margin (exact virtual times)."""
    per_ip_limits = {k: v for k, v in global_and_groups.items() if k in ("global", "anonymous")}
    own = {k: v for k, v in global_and_groups.items() if k not in per_ip_limits}
    per_ip = RateLimiter(per_ip_limits, backend=MemoryBackend(margin=0.0))
    first = RateLimiter(own, backend=MemoryBackend(margin=0.0), per_ip=per_ip)
    second = RateLimiter(own, backend=MemoryBackend(margin=0.0), per_ip=per_ip)
    return first, second, per_ip


def test_global_is_shared_by_two_contexts_and_each_keeps_its_own_groups() -> None:
    async def main() -> list[float]:
        a, b, _ = contexts(**{"global": WindowLimits(3), "g": WindowLimits(10)})
        waits = [await a.acquire("g"), await b.acquire("g"), await a.acquire("g")]
        waits.append(await b.acquire("g"))  # the fourth request of the IP in this second
        return waits

    assert run(main) == [0.0, 0.0, 0.0, 1.0]


def test_without_a_shared_per_ip_limiter_two_contexts_would_exceed_global() -> None:
    # The control of the test above: separate limiters each allow 3, so the IP sends 6 in one second.
    async def main() -> list[float]:
        a = RateLimiter({"global": WindowLimits(3), "g": WindowLimits(10)}, backend=MemoryBackend(margin=0.0))
        b = RateLimiter({"global": WindowLimits(3), "g": WindowLimits(10)}, backend=MemoryBackend(margin=0.0))
        return [await lim.acquire("g") for lim in (a, b, a, b, a, b)]

    assert run(main) == [0.0] * 6


def test_anonymous_is_per_ip_too() -> None:
    async def main() -> list[float]:
        a, b, per_ip = contexts(anonymous=WindowLimits(2))
        waits = [await a.acquire("anonymous"), await b.acquire("anonymous"), await a.acquire("anonymous")]
        assert per_ip.limits == {"anonymous": WindowLimits(2)}
        assert "anonymous" not in a._groups  # routed, not copied
        return waits

    assert run(main) == [0.0, 0.0, 1.0]


def test_a_request_waiting_for_its_group_holds_no_global_admission() -> None:
    # Context a's second request in group "slow" (1/min) waits a minute; meanwhile context b's requests must get
    # every global slot (1/s) from t=1 on. Taking global first would give one of them to the waiting request.
    async def main() -> tuple[float, list[float]]:
        a, b, _ = contexts(**{"global": WindowLimits(1), "slow": WindowLimits(5, 1), "fast": WindowLimits(10)})
        await a.acquire("slow")  # t=0
        waiting = asyncio.create_task(a.acquire("slow"))
        b_times = []
        for _ in range(3):
            await b.acquire("fast")
            b_times.append(now())
        return await waiting, b_times

    slow_wait, b_times = run(main)
    assert b_times == [1.0, 2.0, 3.0]
    assert slow_wait == 60.0


def test_group_admissions_are_recorded_when_global_lets_the_request_go() -> None:
    # global 2/s is full at t=0 (context b); group g of context a allows 1/s. a's first request leaves at 1.0
    # (global), so its second may not leave before 2.0: recording g at 0.0, when g alone would have admitted it,
    # would let both leave within [1.0, 2.0).
    async def main() -> list[float]:
        a, b, _ = contexts(**{"global": WindowLimits(2), "g": WindowLimits(1), "h": WindowLimits(10)})
        await b.acquire("h")
        await b.acquire("h")
        times: list[float] = []

        async def request() -> None:
            await a.acquire("g")
            times.append(now())

        await asyncio.gather(request(), request())
        return times

    assert run(main) == [1.0, 2.0]


def test_global_acquired_directly_counts_once() -> None:
    async def main() -> list[float]:
        lim = RateLimiter({"global": WindowLimits(2)}, backend=MemoryBackend(margin=0.0))
        return [await lim.acquire("global") for _ in range(3)]

    assert run(main) == [0.0, 0.0, 1.0]


def test_a_429_naming_global_pauses_every_context() -> None:
    async def main() -> list[float]:
        a, b, _ = contexts(**{"global": WindowLimits(100), "g": WindowLimits(100), "h": WindowLimits(100)})
        await a.on_rate_limited("global", 4.0)
        return [await b.acquire("h"), await a.acquire("g"), await b.acquire("global")]

    assert run(main) == [4.0, 0.0, 0.0]


def test_head_cancelled_while_queued_for_global_records_nothing_in_its_group() -> None:
    async def main() -> tuple[float, int]:
        a, b, per_ip = contexts(**{"global": WindowLimits(1), "g": WindowLimits(1), "h": WindowLimits(10)})
        await b.acquire("h")  # global full until 1.0
        head = asyncio.create_task(a.acquire("g"))  # g would admit; queued for global
        await asyncio.sleep(0.5)
        head.cancel()
        with pytest.raises(asyncio.CancelledError):
            await head
        waited = await a.acquire("g")  # g recorded nothing: only global (until 1.0) holds it back
        return waited, per_ip.queued("global")

    assert run(main) == (0.5, 0)


def test_update_limits_routes_per_ip_groups_to_the_shared_limiter() -> None:
    a, b, per_ip = contexts(**{"global": WindowLimits(75), "g": WindowLimits(10)})
    a.update_limits({"global": WindowLimits(5), "g": WindowLimits(3), "newGroup": WindowLimits(7)})
    assert per_ip.limits == {"global": WindowLimits(5)}
    assert b.limits == {"g": WindowLimits(10), "global": WindowLimits(5)}
    assert a.limits == {"g": WindowLimits(3), "newGroup": WindowLimits(7), "global": WindowLimits(5)}
    with pytest.raises(ConfigurationError, match="per-IP limiter"):
        RateLimiter({}, per_ip=a)


def test_limiter_for_shares_the_per_ip_limiter_of_an_environment() -> None:
    env = f"test-{uuid.uuid4()}"
    first = limiter_for(env, "nip:5265877635", {"g": WindowLimits(1)})  # knows no global yet
    second = limiter_for(env, "nip:1111111111", {"g": WindowLimits(1), "global": WindowLimits(75)})
    assert first.per_ip is second.per_ip is rl.per_ip_limiter_for(env, {})
    assert first.limits["global"] == WindowLimits(75)  # a later client filled in the missing group
    assert limiter_for(f"{env}-other", "nip:5265877635", {}).per_ip is not first.per_ip
    second.update_limits({"global": WindowLimits(5)})
    third = limiter_for(env, "nip:2222222222", {"global": WindowLimits(75)})
    assert third.limits["global"] == WindowLimits(5)  # a learnt value is not reset by a new client


def test_max_wait_refuses_at_once_with_the_exact_wait_for_the_head() -> None:
    async def main() -> tuple[float, str | None, float]:
        lim = limiter(per_second=2)
        await lim.acquire("g")
        await lim.acquire("g")
        with pytest.raises(RateLimitWaitExceededError) as caught:
            await lim.acquire("g", max_wait=0.5)
        return caught.value.retry_after or -1.0, caught.value.group, now()

    retry_after, group, when = run(main)
    assert (retry_after, group, when) == (1.0, "g", 0.0)  # refused at t=0, the slot frees at t=1


def test_max_wait_counts_the_requests_queued_ahead() -> None:
    async def main() -> float:
        lim = limiter(per_second=None, per_minute=2)
        await lim.acquire("g")
        await lim.acquire("g")  # the minute is full until t=60
        queued = [asyncio.create_task(lim.acquire("g")) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(RateLimitWaitExceededError) as caught:
            await lim.acquire("g", max_wait=100.0)  # 2 ahead: at least 60 + 60 s
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        return caught.value.retry_after or -1.0

    assert run(main) >= 120.0


def test_a_queued_call_gives_up_at_its_deadline_and_leaves_the_queue_intact() -> None:
    async def main() -> tuple[float, list[float]]:
        lim = limiter(per_second=1)
        await lim.acquire("g")
        behind = asyncio.create_task(lim.acquire("g"))  # head: admitted at t=1
        await asyncio.sleep(0)
        with pytest.raises(RateLimitWaitExceededError):
            await lim.acquire("g", max_wait=1.5)  # estimate 1.0 passes; its turn (t=2) is after the deadline
        refused_at = now()
        later = await lim.acquire("g")
        return refused_at, [await behind, later]

    refused_at, waits = run(main)
    assert refused_at <= 1.5
    assert waits[0] == 1.0


def test_release_gives_the_slot_back_and_usage_reports_it() -> None:
    async def main() -> tuple[Any, Any, float]:
        lim = limiter(per_second=2, per_minute=3)
        first = await lim.admit("g")
        await lim.admit("g")
        full = await lim.usage("g")
        await lim.release(first)
        freed = await lim.usage("g")
        waited = await lim.acquire("g")
        return full, freed, waited

    full, freed, waited = run(main)
    assert [(w.seconds, w.used, w.remaining) for w in full.windows] == [(1.0, 2, 0), (60.0, 2, 1)]
    assert full.next_free == pytest.approx(1.0)
    assert [(w.seconds, w.used, w.remaining) for w in freed.windows] == [(1.0, 1, 1), (60.0, 1, 2)]
    assert freed.next_free == 0.0
    assert freed.paused_until == 0.0
    assert waited == 0.0


def test_a_pending_admission_holds_its_group_and_global_until_settled() -> None:
    # 1/s in g and in global: while the first request is in flight (its answer takes 3 s), the second waits; once
    # answered it counts for a window from the answer, in both groups.
    async def main() -> tuple[float, float, float]:
        a, b, _ = contexts(**{"global": WindowLimits(1), "g": WindowLimits(1), "h": WindowLimits(10)})
        first = await a.admit("g", pending=True)
        assert first.hold == PENDING_ARRIVAL_BOUND

        async def answer_after(seconds: float) -> None:
            await asyncio.sleep(seconds)
            await a.settle(first)

        answered = asyncio.create_task(answer_after(3.0))
        second = await a.admit("g", pending=True)  # waits for the answer and then a window
        await answered
        await a.settle(second)
        used = (await a.usage("g")).windows[0].used
        third = await b.admit("h")  # another context: global alone holds it
        return second.admitted_at, third.admitted_at, used

    second_at, third_at, used = run(main)
    assert second_at == 4.0
    assert third_at == 5.0
    assert used == 1


def test_a_pending_global_admission_whose_group_then_refuses_counts_from_that_moment() -> None:
    # The head of g passes global, then g refuses (another limiter sharing its backend took the slot meanwhile):
    # the spent global admission is settled at once, not held for the pending bound.
    async def main() -> tuple[float, float]:
        shared = MemoryBackend(margin=0.0)
        per_ip = RateLimiter({"global": WindowLimits(5)}, backend=MemoryBackend(margin=0.0))
        a = RateLimiter({"g": WindowLimits(1)}, backend=shared, per_ip=per_ip)
        thief = RateLimiter({"g": WindowLimits(1)}, backend=shared)
        for _ in range(5):
            await per_ip.acquire("global")  # global full until t=1

        async def steal() -> None:
            await asyncio.sleep(0.5)
            await thief.acquire("g")  # g's slot goes before a's head gets global at t=1

        stealing = asyncio.create_task(steal())
        admission = await a.admit("g", pending=True)
        await stealing
        await asyncio.sleep(2.1 - now())
        return admission.admitted_at, (await per_ip.usage("global")).windows[0].used

    admitted_at, used = run(main)
    assert admitted_at == 1.5  # g frees a second after the thief's 0.5
    assert used == 1  # the request still in flight; the global admission spent at 1.0 left the window at 2.0
