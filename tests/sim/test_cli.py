"""`ksef-async simulator`: prints its base URL, seeds contexts from --nip/--token, stops on Ctrl+C."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest

from .conftest import Api

pytestmark = pytest.mark.anyio


async def test_cli_serves_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ksef_async.cli", "simulator", "--port", "0", "--public-url", "http://localhost:1",
        "--nip", "5265877635", "--token", "given-token", "--nip", "1111111111", "--seed", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip() for _ in range(3)]
        base_url = lines[0]
        assert base_url.startswith("http://localhost:1/v2")
        generated = lines[2].rsplit(" ", 1)[1]
        assert lines[1] == "context Nip 5265877635: KSeF token as given"
        assert proc.stderr is not None  # the start-up log line names the public URL too
        bound = None
        while bound is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            if "listening on" in line:
                bound = line
        assert "http://localhost:1/v2" in bound
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0
    assert generated.count("|") == 2


async def test_cli_seeded_contexts_can_log_in() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ksef_async.cli", "simulator", "--port", "0", "--nip", "5265877635",
        "--token", "given-token", "--rate-limits", "off",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        base_url = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        async with aiohttp.ClientSession() as http:
            api = Api(http, base_url)
            tokens = await api.login("5265877635", "given-token")
            assert tokens["accessToken"]["token"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_cli_system_warning_is_added_to_every_answer() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ksef_async.cli", "simulator", "--port", "0", "--rate-limits", "off",
        "--system-warning", "[cli]: planned maintenance",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        base_url = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(base_url + "/security/public-key-certificates") as ok:
                assert ok.status == 200
                assert ok.headers["X-System-Warning"] == "[cli]: planned maintenance"
            async with http.get(base_url + "/limits/context") as unauthorized:
                assert unauthorized.status == 401
                assert unauthorized.headers["X-System-Warning"] == "[cli]: planned maintenance"
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
