"""The options every command takes: --log-json (JSON lines with context and reference numbers), --quiet, --verbose."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from ksef_async.testing.invoices import write_invoices
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN

pytestmark = pytest.mark.anyio


def _env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")}
    return env | {"KSEF_BASE_URL": base_url, "KSEF_NIP": DEFAULT_NIP, "KSEF_TOKEN": DEFAULT_TOKEN}


async def test_log_json_writes_context_and_reference_numbers(ksef_simulator_factory: Any, tmp_path: Path) -> None:
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], rate_limits="off", seed=51)
    [invoice] = write_invoices(tmp_path / "in", 1, DEFAULT_NIP, seed=52)
    log = tmp_path / "log.jsonl"
    done = await anyio.run_process(
        [sys.executable, "-m", "ksef_async.cli", "--log-json", str(log), "--verbose", "send", str(invoice), "--online"],
        check=False,
        env=_env(sim.base_url),
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert DEFAULT_TOKEN not in text
    assert "Bearer" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert records
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    opened = [r for r in records if r["message"].startswith("online session ") and " opened " in r["message"]]
    assert len(opened) == 1
    assert opened[0]["ksef_context"] == f"Nip:{DEFAULT_NIP}"
    ref = opened[0]["ksef_reference_number"]
    assert opened[0]["message"] == f"online session {ref} opened for 1 invoices"
    assert any(r["message"].startswith("KSeF call ") and r.get("ksef_operation") for r in records)  # DEBUG: file
    assert f"INFO ksef_async.online: online session {ref} opened" in done.stderr.decode()  # --verbose


def test_quiet_and_verbose_exclude_each_other() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "--quiet", "--verbose", "validate", "x.xml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--quiet and --verbose exclude each other" in done.stderr


def test_help_ends_with_the_exit_code_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "--help"], capture_output=True, text=True, check=True
    )
    for line in ("0: done", "2: usage or configuration", "3: interrupted", "4: a local file", "--install-completion"):
        assert line in done.stdout


async def test_limits_and_get_print_json(ksef_simulator_factory: Any, tmp_path: Path) -> None:
    from ksef_async import KsefClient, KsefTokenCredentials, send_online  # noqa: PLC0415
    from ksef_async.testing.invoices import InvoiceFactory  # noqa: PLC0415

    # Production limits: with limiting off every window is reported unlimited (null in the JSON).
    sim = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], rate_limits="production", seed=53)
    limits = await anyio.run_process(
        [sys.executable, "-m", "ksef_async.cli", "limits", "--json"], check=False, env=_env(sim.base_url)
    )
    assert limits.returncode == 0, limits.stderr.decode()[-2000:]
    body = json.loads(limits.stdout)
    assert {"context", "subject", "rateLimits"} <= body.keys()
    assert "batchSession" in body["context"]
    assert body["rateLimits"]["global"]["perSecond"] >= 1

    [(name, data)] = list(InvoiceFactory(DEFAULT_NIP, seed=54).iter(1))
    async with KsefClient(sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP) as c:
        result = await send_online(c, [(name, data)])
    number = result.outcomes[0].ksef_number
    assert number is not None
    got = await anyio.run_process(
        [sys.executable, "-m", "ksef_async.cli", "get", number, "--json", "--wait", "30"],
        check=False,
        env=_env(sim.base_url),
    )
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    record = json.loads(got.stdout)
    assert record["ksefNumber"] == number
    assert record["size"] == len(data)
    assert record["xml"].encode() == data


def test_shell_completion_installs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {"HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "--install-completion", "--shell", "bash"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".local/share/bash-completion/completions/ksef-async"
    assert "send" in script.read_text()
    assert "resume" in script.read_text()
