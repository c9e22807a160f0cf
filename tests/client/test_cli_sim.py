"""The `send --online`, `status` and `upo` commands, run as a user runs them, against a simulator on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksef_async.cli._commands import app
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread


@pytest.fixture(scope="module")
def running_sim() -> Iterator[KsefSimulator]:
    """A simulator served from its own event loop thread, so the CLI can run in a separate process."""
    with serve_in_thread(KsefSimulator(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], strict_contract=True, seed=3)) as sim:
        yield sim
    assert sim.contract_violations == []


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=full_env,
        check=False,
    )


def write(directory: Path, invoices: list[tuple[str, bytes]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in invoices:
        path = directory / name.replace("/", "_")
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_send_online_twenty_invoices_exits_0_and_writes_the_report(running_sim: KsefSimulator, tmp_path: Path) -> None:
    write(tmp_path / "in", list(InvoiceFactory(DEFAULT_NIP, seed=21).iter(20)))
    report = tmp_path / "report.json"
    result = cli(
        "send", str(tmp_path / "in"), "--online", "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
        "--report", str(report), "--upo-dir", str(tmp_path / "upo"),
        env={"KSEF_TOKEN": DEFAULT_TOKEN},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["accepted"] == 20
    assert data["rejected"] == 0
    assert all(item["accepted"] and item["ksef_number"] for item in data["invoices"])
    assert len({item["ksef_number"] for item in data["invoices"]}) == 20
    assert result.stdout.count(": accepted ") == 20
    assert DEFAULT_TOKEN not in result.stdout + result.stderr
    assert list((tmp_path / "upo").glob("*.xml"))

    ref = data["sessions"][0]["reference_number"]
    status = cli("status", ref, "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP, "--json",
                 env={"KSEF_TOKEN": DEFAULT_TOKEN})  # fmt: skip
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["status_code"] == 200
    assert len(shown["invoices"]) == 20

    upo = cli("upo", ref, "--out", str(tmp_path / "upo2"), "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
              "--token", DEFAULT_TOKEN)  # fmt: skip
    assert upo.returncode == 0, upo.stderr
    (page,) = (tmp_path / "upo2").glob("*.xml")
    assert all(item["ksef_number"].encode() in page.read_bytes() for item in data["invoices"])


def test_send_online_exits_1_when_an_invoice_is_rejected(running_sim: KsefSimulator, tmp_path: Path) -> None:
    mine = InvoiceFactory(DEFAULT_NIP, seed=22).make(0)
    foreign = InvoiceFactory("1111111111", seed=22).make(1)
    paths = write(tmp_path / "in", [mine, foreign])
    report = tmp_path / "report.json"
    result = cli(
        "send", *map(str, paths), "--online", "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
        "--report", str(report), env={"KSEF_TOKEN": DEFAULT_TOKEN},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    by_file = {Path(item["file"]).name: item for item in json.loads(report.read_text(encoding="utf-8"))["invoices"]}
    assert by_file[paths[0].name]["accepted"]
    assert by_file[paths[1].name]["status_code"] == 410
    assert "rejected [410]" in result.stdout


def test_invalid_invoice_exits_1_and_sends_nothing(running_sim: KsefSimulator, tmp_path: Path) -> None:
    (tmp_path / "bad.xml").write_bytes(b"<Faktura/>")
    before = running_sim.counters.requests["onlineSession"]
    result = cli("send", str(tmp_path / "bad.xml"), "--online", "--base-url", running_sim.base_url,
                 "--nip", DEFAULT_NIP, env={"KSEF_TOKEN": DEFAULT_TOKEN})  # fmt: skip
    assert result.returncode == 1
    assert "bad.xml" in result.stderr
    assert running_sim.counters.requests["onlineSession"] == before


@pytest.mark.parametrize(
    "args",
    [
        ("--online", "--nip", DEFAULT_NIP),  # no --base-url/--env
        ("--online", "--env", "test", "--base-url", "http://127.0.0.1:1/v2", "--nip", DEFAULT_NIP),
        ("--online", "--env", "test"),  # no context
        ("--online", "--env", "test", "--nip", "123"),  # malformed NIP
        ("--online", "--env", "test", "--nip", DEFAULT_NIP, "--cert", "missing.pem", "--key", "missing.key"),
    ],
)
def test_usage_errors_exit_2_without_echoing_secrets(
    tmp_path: Path, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    invoice = tmp_path / "a.xml"
    invoice.write_bytes(InvoiceFactory(DEFAULT_NIP, seed=23).make(0)[1])
    secret = "SECRET-TOKEN-VALUE-123"
    for name in ("KSEF_BASE_URL", "KSEF_ENV", "KSEF_NIP", "KSEF_KEY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KSEF_TOKEN", secret)
    if "--cert" in args:
        monkeypatch.delenv("KSEF_TOKEN")
    assert app(["send", str(invoice), *args], result_action="return_value") == 2
    out = capsys.readouterr()
    assert out.err
    assert secret not in out.out + out.err


def test_wrong_token_exits_2_with_the_ksef_reason(running_sim: KsefSimulator, tmp_path: Path) -> None:
    invoice = write(tmp_path, [InvoiceFactory(DEFAULT_NIP, seed=24).make(0)])[0]
    result = cli("send", str(invoice), "--online", "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
                 env={"KSEF_TOKEN": "wrong-token-value"})  # fmt: skip
    assert result.returncode == 2
    assert "[450]" in result.stderr
    assert "wrong-token-value" not in result.stdout + result.stderr
