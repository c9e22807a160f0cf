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
    opened = [r for r in records if r["message"] == "online session opened"]
    assert len(opened) == 1
    assert opened[0]["ksef_context"] == f"Nip:{DEFAULT_NIP}"
    assert opened[0]["ksef_reference_number"]
    assert any(r["message"] == "KSeF call" and r.get("ksef_operation") for r in records)  # DEBUG goes to the file
    assert "INFO ksef_async.online: online session opened" in done.stderr.decode()  # --verbose


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
