"""A batch send meeting API 503s during an announced KSeF failure: it waits, then finishes exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.engine import BatchSender
from ksef_async.batch.events import BatchEvent, OutageWaiting
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.offline import emergency_deadline
from ksef_async.core.status_service import ServiceState, ServiceStatus, parse_datetime
from ksef_async.errors import ServerError
from ksef_async.outage import OutageGuard, OutagePolicy
from ksef_async.status_service import StatusServiceClient
from ksef_async.testing.invoices import write_invoices
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.transport import RetryPolicy

from .conftest import accepted_per_number, fast_config

pytestmark = pytest.mark.anyio

SimFactory = Callable[..., Awaitable[KsefSimulator]]
FAST_RETRY = RetryPolicy(attempts=2, timeout=5.0, wait_initial=0.01, wait_max=0.02, wait_jitter=0.0)


class FakeTime:
    """A monotonic clock moved only by the guard's sleeps; runs ``on_sleep`` after each one."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda _n: None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def outage_sender(
    sim: KsefSimulator, state_dir: Path, guard: OutageGuard, on_event: Callable[[BatchEvent], None]
) -> AsyncIterator[BatchSender]:
    async with KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=ClientConfig(retry=FAST_RETRY),
    ) as client:
        yield BatchSender(client, state_dir, fast_config(), on_event=on_event, outage=guard)


def fail_at_first_upload(sim: KsefSimulator, events: list[BatchEvent]) -> Callable[[BatchEvent], None]:
    """An event sink that announces a FAILURE (the API answering 503) when the first part is uploaded."""

    def sink(event: BatchEvent) -> None:
        events.append(event)
        if type(event).__name__ == "PartUploaded" and not sim.status_service.outage:
            sim.status_service.api_down = True
            sim.status_service.start_failure()

    return sink


async def test_send_waits_out_an_announced_failure_and_completes_once(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=5, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 5, DEFAULT_NIP, 4, seed=2)
    polls_before_end = 3

    def on_sleep(count: int) -> None:
        if count == polls_before_end:
            sim.status_service.end_failure()

    fake = FakeTime(on_sleep)
    events: list[BatchEvent] = []
    async with StatusServiceClient(sim.status_url, cache_ttl=0) as status:
        guard = OutageGuard(
            status, OutagePolicy(max_wait=600, poll_interval=30), sleep=fake.sleep, monotonic=fake.monotonic
        )
        async with outage_sender(sim, tmp_path / "state", guard, fail_at_first_upload(sim, events)) as sender:
            report = await sender.send([str(p) for p in paths])

    assert report.all_accepted, report.to_json()["summary"]
    assert set(accepted_per_number(sim).values()) == {1}
    assert len(accepted_per_number(sim)) == 5
    assert guard.waits == 1
    assert fake.sleeps == [30.0, 30.0, 30.0]  # polled modestly, at the configured interval
    waiting = [e for e in events if isinstance(e, OutageWaiting)]
    assert waiting[0].message.startswith("KSeF reports FAILURE since ")
    assert waiting[0].message.endswith("; waiting")
    assert waiting[-1].finished
    assert not waiting[-1].gave_up
    (window,) = report.to_json()["outages"]
    assert window["category"] == "FAILURE"
    start, end = parse_datetime(window["start"]), parse_datetime(window["end"])
    assert start is not None
    assert end is not None
    assert start <= end
    assert window["sendDeadline"] == emergency_deadline(end.astimezone(_warsaw()).date()).isoformat()
    assert window["offlineMode"] == "emergency"


async def test_the_wait_is_bounded_by_max_wait(ksef_simulator_factory: SimFactory, tmp_path: Path) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=6, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 3, DEFAULT_NIP, 4, seed=4)
    fake = FakeTime()
    events: list[BatchEvent] = []
    async with StatusServiceClient(sim.status_url, cache_ttl=0) as status:
        guard = OutageGuard(status, OutagePolicy(max_wait=100, poll_interval=30), sleep=fake.sleep,
                            monotonic=fake.monotonic)  # fmt: skip
        async with outage_sender(sim, tmp_path / "state", guard, fail_at_first_upload(sim, events)) as sender:
            report = await sender.send([str(p) for p in paths])
    assert not report.all_accepted
    assert [s["state"] for s in report.sessions] == ["failed"]
    (window,) = report.to_json()["outages"]
    assert (window["category"], window["end"], window["sendDeadline"]) == ("FAILURE", None, None)
    # Each wait stops at max_wait (30 + 30 + 30 + 10 s) and the engine goes on as without a guard.
    assert guard.waits >= 1
    assert fake.sleeps[:4] == [30.0, 30.0, 30.0, 10.0]
    assert fake.now <= 100 * guard.waits
    gave_up = [e for e in events if isinstance(e, OutageWaiting) and e.gave_up]
    assert len(gave_up) == guard.waits
    assert "stopped waiting after 100 s" in gave_up[0].message
    assert sim.state.invoices == {}  # nothing was processed: the session was never closed


async def test_a_stopped_wait_leaves_a_resumable_send(ksef_simulator_factory: SimFactory, tmp_path: Path) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=8, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 4, DEFAULT_NIP, 4, seed=6)
    scope = anyio.CancelScope()
    fake = FakeTime(lambda count: scope.cancel() if count == 2 else None)
    events: list[BatchEvent] = []
    async with StatusServiceClient(sim.status_url, cache_ttl=0) as status:
        guard = OutageGuard(status, OutagePolicy(poll_interval=30), sleep=fake.sleep, monotonic=fake.monotonic)
        async with outage_sender(sim, tmp_path / "state", guard, fail_at_first_upload(sim, events)) as sender:
            with scope:
                await sender.send([str(p) for p in paths])
    assert scope.cancelled_caught
    assert sim.state.invoices == {}
    sim.status_service.end_failure()
    async with outage_sender(sim, tmp_path / "state", guard, events.append) as sender:
        report = await sender.resume()
    assert report.all_accepted, report.to_json()["summary"]
    assert set(accepted_per_number(sim).values()) == {1}
    assert len(accepted_per_number(sim)) == 4


class Unreachable:
    async def status(self) -> ServiceStatus:
        return ServiceStatus.unknown("unreachable: ClientConnectorError")


async def test_unknown_status_behaves_as_without_a_guard() -> None:
    fake = FakeTime()
    guard = OutageGuard(Unreachable(), sleep=fake.sleep, monotonic=fake.monotonic)
    calls = 0

    async def flaky() -> Any:
        nonlocal calls
        calls += 1
        raise ServerError(503, [])

    with pytest.raises(ServerError):
        await guard.call(flaky)
    assert calls == 1
    assert fake.sleeps == []
    assert guard.waits == 0


async def test_guard_against_an_unreachable_service_does_not_wait() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with StatusServiceClient(f"http://127.0.0.1:{port}", timeout=2.0) as status:
        guard = OutageGuard(status)
        assert await guard.wait_if_announced(ServerError(503, [])) is False
        assert (await status.status()).state is ServiceState.UNKNOWN


def _warsaw() -> Any:
    import zoneinfo  # noqa: PLC0415

    return zoneinfo.ZoneInfo("Europe/Warsaw")
