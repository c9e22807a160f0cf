"""The CLI against a simulator in another process: ``sync`` killed with SIGKILL and re-run, ``query``, ``get``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ksef_async.retrieval.sync import INDEX_FILE

from .conftest import NIP, TOKEN

SERVER = Path(__file__).with_name("_sim_server.py")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ready = tmp_path_factory.mktemp("server") / "ready.json"
    proc = subprocess.Popen([sys.executable, str(SERVER), str(ready), "3000", "150"])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "the simulator process died"
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        yield json.loads(ready.read_text())
    finally:
        proc.kill()
        proc.wait()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ksef_async.cli", *args]


def env(server: dict[str, Any]) -> dict[str, str]:
    return os.environ | {"KSEF_BASE_URL": server["base_url"], "KSEF_NIP": NIP, "KSEF_TOKEN": TOKEN}


def indexed(out: Path) -> list[str]:
    path = out / INDEX_FILE
    if not path.exists():
        return []
    return [json.loads(line)["ksefNumber"] for line in path.read_bytes().splitlines() if line.endswith(b"}")]


def test_sync_killed_with_sigkill_then_rerun_loses_and_duplicates_nothing(
    server: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = cli("sync", str(out), "--subject", "Subject2", "--since", server["since"])
    proc = subprocess.Popen(args, env=env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(indexed(out)) < 400:  # a few packages in, more to come
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(indexed(out))
    assert killed_at < 3000
    done = subprocess.run(args, env=env(server), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    numbers = indexed(out)
    assert len(numbers) == len(set(numbers)) == 3000
    assert set(numbers) == set(server["numbers"])
    assert sorted(p.stem for p in out.glob("*.xml")) == sorted(server["numbers"])
    assert not list(out.glob(".*.tmp"))
    summary = json.loads((out / "sync-summary.json").read_text())
    assert summary["invoicesWritten"] == 3000 - killed_at
    assert "Subject2:" in done.stdout


def test_query_json_and_get(server: dict[str, Any], tmp_path: Path) -> None:
    done = subprocess.run(
        cli("query", "--subject", "Subject2", "--from", server["since"], "--json", "--limit", "300"),
        env=env(server),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["ksefNumber"] for r in records] == server["numbers"][:300]
    target = tmp_path / "one.xml"
    number = server["numbers"][7]
    got = subprocess.run(
        cli("get", number, "--output", str(target)), env=env(server), capture_output=True, timeout=60, check=False
    )
    assert got.returncode == 0, got.stderr
    assert b"<P_2>" in target.read_bytes()
    assert records[7]["invoiceHash"]
    bad = subprocess.run(
        cli("sync", str(tmp_path / "x"), "--subject", "Subject9"),
        env=env(server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "Subject9" in bad.stderr


def test_sync_rerun_needs_only_the_token(server: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = subprocess.run(
        cli("sync", str(out), "--subject", "Subject2", "--since", server["since"], "--budget", "1"),
        env=env(server),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    assert TOKEN not in (out / ".ksef-sync-run.json").read_text()
    bare = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")}
    missing = subprocess.run(cli("sync", str(out)), env=bare, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2
    assert "KSEF_TOKEN" in missing.stderr
    again = subprocess.run(
        cli("sync", str(out), "--json"),
        env=bare | {"KSEF_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert [s["subject_type"] for s in summary["subjects"]] == ["Subject2"]
    assert len(indexed(out)) == len(set(indexed(out))) == 3000
