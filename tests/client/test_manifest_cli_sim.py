"""`ksef-async send --manifest`: 20 contexts in one process, one report, per-context UPOs; resume after a SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksef_async.core.identifiers import generate_nip
from ksef_async.errors import ConfigurationError
from ksef_async.manifest import load_manifest, set_aside_unplanned
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread

pytestmark = pytest.mark.slow


def _contexts(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    nips: list[str] = []
    while len(nips) < count:
        nip = generate_nip(rng)
        if nip not in nips:
            nips.append(nip)
    return [(nip, f"20250101-EC-{nip}-0000000000-00|nip-{nip}|" + f"{i:02d}" * 32) for i, nip in enumerate(nips)]


def _setup(
    tmp_path: Path, base_url: str, contexts: list[tuple[str, str]], per_context: int
) -> tuple[Path, dict[str, str]]:
    lines = [f'base_url = "{base_url}"']
    env: dict[str, str] = {}
    for i, (nip, token) in enumerate(contexts):
        directory = tmp_path / "in" / nip
        directory.mkdir(parents=True)
        for name, data in InvoiceFactory(nip, seed=i).iter(per_context):
            (directory / name.replace("/", "_")).write_bytes(data)
        lines += ["[[contexts]]", f'nip = "{nip}"', f'input = "in/{nip}"', f'token_env = "TOKEN_{i}"']
        env[f"TOKEN_{i}"] = token
    manifest = tmp_path / "run.toml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, env


def _cli_env(extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | extra


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", *args], capture_output=True, text=True, timeout=300,
        env=_cli_env(env), check=False,
    )  # fmt: skip


@pytest.fixture
def sim20() -> Iterator[tuple[KsefSimulator, list[tuple[str, str]]]]:
    contexts = _contexts(20, seed=1)
    with serve_in_thread(KsefSimulator(contexts=contexts, strict_contract=True, seed=11)) as sim:
        yield sim, contexts
    assert sim.contract_violations == []


def test_manifest_send_of_20_contexts_one_report_per_context_upos(
    sim20: tuple[KsefSimulator, list[tuple[str, str]]], tmp_path: Path
) -> None:
    sim, contexts = sim20
    manifest, env = _setup(tmp_path, sim.base_url, contexts, per_context=2)
    report_path, state = tmp_path / "report.json", tmp_path / "state"
    done = _cli("send", "--manifest", str(manifest), "--state-dir", str(state), "--report", str(report_path), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["summary"]["contexts"] == 20
    assert (report["summary"]["accepted"], report["summary"]["invoices"]) == (40, 40)
    assert report["summary"]["failed_contexts"] == []
    for nip, _ in contexts:
        context = report["contexts"][nip]
        assert context["summary"]["accepted"] == 2
        upo_files = [Path(f) for session in context["sessions"] for f in session.get("upo", [])]
        assert upo_files, context["sessions"]
        assert all(f.is_file() and nip in f.read_text() for f in upo_files)
        assert f"[{nip}] done: 2/2 in KSeF" in done.stderr
    assert len(sim._state.invoices) == 40
    assert sim.counters.rate_limited == 0
    for _, token in contexts:
        assert token not in done.stdout + done.stderr + report_path.read_text()
        assert token not in (state / "manifest-run.json").read_text()
    # Resuming a finished run sends nothing again.
    again = _cli("resume", str(state), "--report", str(tmp_path / "again.json"), env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(sim._state.invoices) == 40


def test_manifest_run_killed_mid_run_is_resumed_without_duplicates(tmp_path: Path) -> None:
    contexts = _contexts(6, seed=2)
    # Each part upload takes 1 s, so the kill lands before the sessions close even when the machine is loaded (the
    # run once finished all 18 invoices before the test's poll noticed the third session).
    simulator = KsefSimulator(contexts=contexts, seed=12, processing_delay=2.0, faults="upload-delay=1.0")
    with serve_in_thread(simulator) as sim:
        manifest, env = _setup(tmp_path, sim.base_url, contexts, per_context=3)
        state = tmp_path / "state"
        process = subprocess.Popen(
            [sys.executable, "-m", "ksef_async.cli", "send", "--manifest", str(manifest), "--state-dir", str(state)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_cli_env(env),
        )  # fmt: skip
        assert process.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(sim._state.sessions) < 3:  # some batches opened, none processed
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        process.stderr.close()
        before = len(sim._state.invoices)
        assert before < 18  # killed mid-run
        resumed = _cli("resume", str(state), "--report", str(tmp_path / "report.json"), env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["summary"]["accepted"] == 18
        assert report["summary"]["duplicate"] == 0  # nothing was sent twice
        assert len(sim._state.invoices) == 18


def test_a_manifest_never_holds_secrets(tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text('[[contexts]]\nnip = "5265877635"\ninput = "x"\ntoken = "secret"\n')
    with pytest.raises(ConfigurationError, match=r"contexts\[0\]\.token: secrets never go in the manifest"):
        load_manifest(manifest)
    manifest.write_text('[[contexts]]\nnip = "5265877636"\ninput = "x"\n')
    with pytest.raises(ConfigurationError, match=r"contexts\[0\]\.nip"):
        load_manifest(manifest)


def test_a_state_directory_without_a_plan_is_set_aside(tmp_path: Path) -> None:
    killed = tmp_path / "state" / "5265877635"
    killed.mkdir(parents=True)
    (killed / "part-00000.bin").write_bytes(b"ciphertext of a killed prepare")
    assert set_aside_unplanned(killed) == tmp_path / "state" / "5265877635.unplanned-1"
    assert not killed.exists()
    killed.mkdir()
    assert set_aside_unplanned(killed) is None  # empty: nothing to move
    (killed / "plan.json").write_text("{}")
    (killed / "part-00000.bin").write_bytes(b"x")
    assert set_aside_unplanned(killed) is None  # a plan: resume it, never move it
