"""`ksef-async status` without a reference, run as a user runs it, against the simulator's status service."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from ksef_async.testing.simulator import KsefSimulator, serve_in_thread


@pytest.fixture(scope="module")
def running_sim() -> Iterator[KsefSimulator]:
    """A simulator served from its own thread, so the CLI can run in a separate process."""
    with serve_in_thread(KsefSimulator(rate_limits="off", seed=3)) as sim:
        yield sim
    assert sim.internal_errors == []


def status_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")}
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "status", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_exit_codes_and_output_per_state(running_sim: KsefSimulator) -> None:
    script = running_sim.status_service
    script.available()
    now = running_sim.clock.now_dt()
    script.announce_maintenance(now + dt.timedelta(days=2), now + dt.timedelta(days=2, hours=3))

    available = status_cli("--status-url", running_sim.status_url)
    assert available.returncode == 0, available.stderr
    assert f"KSeF status ({running_sim.status_url}): AVAILABLE" in available.stdout
    assert "upcoming maintenance: MAINTENANCE" in available.stdout

    script.start_maintenance()
    assert status_cli("--status-url", running_sim.status_url).returncode == 3

    event = script.start_failure()
    failure = status_cli("--status-url", running_sim.status_url, "--json")
    assert failure.returncode == 4, failure.stderr
    out = json.loads(failure.stdout)
    assert out["status"] == "FAILURE"
    assert out["exitCode"] == 4
    assert out["currentOutage"]["eventId"] == event
    assert out["currentOutage"]["end"] is None
    assert len(out["upcomingMaintenance"]) == 1

    script.start_failure(total=True)
    total = status_cli("--status-url", running_sim.status_url)
    assert total.returncode == 5
    assert "TOTAL_FAILURE" in total.stdout
    script.available()


def test_unreachable_service_is_unknown_exit_6() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = status_cli("--status-url", f"http://127.0.0.1:{port}/latarnia", "--json", "--timeout", "3")
    assert result.returncode == 6, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "UNKNOWN"
    assert out["reason"].startswith("unreachable")


def test_bad_status_url_is_a_usage_error() -> None:
    result = status_cli("--status-url", "ftp://nowhere")
    assert result.returncode == 2
    assert "must start with http" in result.stderr


@pytest.mark.anyio
async def test_simulator_cli_serves_a_scripted_status_service() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ksef_async.cli", "simulator", "--port", "0", "--status-state", "failure",
        "--faults", "outage-api-error=1", "--seed", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        base_url = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        assert line.endswith("(FAILURE)")
        status_url = line.split(" ")[2]
        assert status_url == base_url.removesuffix("/v2") + "/latarnia"
        async with aiohttp.ClientSession() as http:
            async with http.get(status_url + "/status") as response:
                body = await response.json()
            assert body["status"] == "FAILURE"
            assert body["messages"][0]["type"] == "FAILURE_START"
            async with http.get(base_url + "/security/public-key-certificates") as response:
                assert response.status == 503
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
