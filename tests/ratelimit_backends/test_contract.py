"""One contract for every `ksef_async.ratelimit.Backend`: the same tests over the memory and the Redis backend.

Times are explicit numbers (a fake clock): the Redis backend runs with ``server_time=False``, so it stores the
callers' times instead of reading Redis' ``TIME``, against a real ``redis-server`` (see conftest). Expected values are
KSeF's windows lengthened by the default margin: 1.25 s, 63 s and 3780 s.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ksef_async.core.ratelimit import SlidingWindowState, WindowLimits
from ksef_async.ratelimit import Backend, MemoryBackend
from ksef_async.ratelimit_redis import RedisLimits

from ._redis import RedisServer, needs_redis

pytestmark = pytest.mark.anyio

SEND = WindowLimits(10, 30, 180)
SMALL = WindowLimits(2, 3, 5)

Factory = Callable[[str], Backend]


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def make_backend(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Factory]:
    """Return ``make(scope)``: a backend of one scope (two scopes never share windows)."""
    if request.param == "memory":
        memories: dict[str, MemoryBackend] = {}

        def make_memory(scope: str) -> Backend:
            return memories.setdefault(scope, MemoryBackend())

        yield make_memory
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    store = RedisLimits(server.url, namespace=namespace, server_time=False)

    def make_redis(scope: str) -> Backend:
        return store.backend("https://sim.test/v2", scope)

    yield make_redis
    await store.aclose()


async def test_admits_the_limit_of_each_window_then_names_the_exact_time(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    for _ in range(10):
        assert await backend.try_admit("invoiceSend", SEND, 100.0) == 100.0
    assert await backend.try_admit("invoiceSend", SEND, 100.0) == pytest.approx(101.25)
    assert await backend.try_admit("invoiceSend", SEND, 101.0) == pytest.approx(101.25)
    for _ in range(10):
        assert await backend.try_admit("invoiceSend", SEND, 101.25) == 101.25
    for _ in range(10):
        assert await backend.try_admit("invoiceSend", SEND, 102.5) == 102.5
    # 30 in the minute: the 1-minute window (63 s with the margin) binds now, not the 1-second one.
    assert await backend.try_admit("invoiceSend", SEND, 104.0) == pytest.approx(163.0)
    assert await backend.try_admit("invoiceSend", SEND, 163.0) == 163.0


async def test_a_refusal_records_nothing_and_next_admission_records_nothing(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    for _ in range(2):
        assert await backend.try_admit("g", SMALL, 0.0) == 0.0
    for _ in range(5):
        assert await backend.try_admit("g", SMALL, 0.5) == pytest.approx(1.25)
        assert await backend.next_admission("g", SMALL, 0.5) == pytest.approx(1.25)
    assert await backend.next_admission("g", SMALL, 2.0) == 2.0
    assert await backend.next_admission("g", SMALL, 2.0) == 2.0
    assert await backend.try_admit("g", SMALL, 2.0) == 2.0
    # Three in the minute: the next is at 0 + 63.
    assert await backend.try_admit("g", SMALL, 3.0) == pytest.approx(63.0)


async def test_the_hour_window_binds_after_the_minutes(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    now = 0.0
    admitted: list[float] = []
    while len(admitted) < 5:
        answer = await backend.try_admit("g", SMALL, now)
        if answer == now:
            admitted.append(now)
        else:
            now = answer
    assert admitted == pytest.approx([0.0, 0.0, 1.25, 63.0, 63.0])
    assert await backend.try_admit("g", SMALL, 70.0) == pytest.approx(3780.0)


async def test_pause_holds_every_admission_and_never_shortens(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    await backend.pause("g", 30.0)  # before any admission of the group
    assert await backend.try_admit("g", SMALL, 1.0) == pytest.approx(30.0)
    await backend.pause("g", 10.0)
    assert await backend.next_admission("g", SMALL, 1.0) == pytest.approx(30.0)
    assert await backend.try_admit("g", SMALL, 30.0) == 30.0
    await backend.pause("g", 50.0)
    assert await backend.try_admit("g", SMALL, 31.0) == pytest.approx(50.0)


async def test_groups_and_scopes_do_not_share_windows(make_backend: Factory) -> None:
    one, other = make_backend("ctx:Nip:1"), make_backend("ctx:Nip:2")
    for _ in range(2):
        assert await one.try_admit("g", SMALL, 0.0) == 0.0
    assert await one.try_admit("g", SMALL, 0.0) > 0.0
    assert await one.try_admit("h", SMALL, 0.0) == 0.0
    assert await other.try_admit("g", SMALL, 0.0) == 0.0
    await other.pause("g", 100.0)
    assert await one.try_admit("h", SMALL, 1.0) == 1.0


async def test_lowered_limits_count_the_history(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    for _ in range(10):
        assert await backend.try_admit("g", SEND, 0.0) == 0.0
    lower = WindowLimits(5, 30, 180)
    assert await backend.try_admit("g", lower, 1.0) == pytest.approx(1.25)
    assert await backend.next_admission("g", lower, 1.3) == 1.3


async def test_release_gives_the_slot_back(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    assert await backend.try_admit("g", SMALL, 0.0) == 0.0
    assert await backend.try_admit("g", SMALL, 0.5) == 0.5
    assert await backend.try_admit("g", SMALL, 0.6) > 0.6
    await backend.release("g", 0.5)
    assert await backend.try_admit("g", SMALL, 0.6) == 0.6


async def test_usage_reports_each_window(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    for when in (0.0, 0.0, 1.25):
        assert await backend.try_admit("g", SMALL, when) == when
    await backend.pause("g", 70.0)
    usage = await backend.usage("g", SMALL, 2.0)
    assert [(w.seconds, w.limit, w.used, w.remaining) for w in usage.windows] == [
        (1.0, 2, 1, 1),
        (60.0, 3, 3, 0),
        (3600.0, 5, 3, 2),
    ]
    assert usage.next_free == pytest.approx(70.0)
    assert usage.paused_until == pytest.approx(70.0)


async def test_random_schedules_match_the_reference_arithmetic(make_backend: Factory) -> None:
    """Any sequence of asks gets the answers `SlidingWindowState` (the reference) gives."""
    rng = random.Random(14)
    backend = make_backend("ctx:Nip:1")
    reference = SlidingWindowState(SMALL)
    now = 0.0
    answers: list[Any] = []
    for _ in range(120):
        now += rng.choice([0.0, 0.1, 0.5, 1.3, 20.0, 400.0])
        if rng.random() < 0.3:
            got = await backend.next_admission("g", SMALL, now)
            want = reference.next_admission_time(now)
        else:
            got = await backend.try_admit("g", SMALL, now)
            want = reference.try_admit(now)
        answers.append((now, got, want))
        assert got == pytest.approx(want, abs=1e-9), answers[-5:]


async def test_a_pending_admission_holds_its_slot_until_settled(make_backend: Factory) -> None:
    backend = make_backend("ctx:Nip:1")
    one = WindowLimits(1, 30, 180)
    assert await backend.try_admit("g", one, 0.0, 60.0) == 0.0
    # In flight: the slot frees no sooner than a window from now; asked again then, the same while unsettled.
    assert await backend.try_admit("g", one, 0.5, 60.0) == pytest.approx(1.75)
    assert await backend.next_admission("g", one, 1.75) == pytest.approx(3.0)
    assert (await backend.usage("g", one, 1.75)).windows[0].used == 1
    await backend.settle("g", 0.0, 60.0, 2.0)
    assert await backend.next_admission("g", one, 2.0) == pytest.approx(3.25)  # a window after the answer
    assert await backend.try_admit("g", one, 3.25, 60.0) == 3.25
    await backend.release("g", 3.25, 60.0)  # never sent
    assert await backend.try_admit("g", one, 3.25) == 3.25
