"""`ksef-async send --offline` (online and batch) and `send --online --corrects`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread

from .conftest import broken


@pytest.fixture(scope="module")
def running_sim() -> Iterator[KsefSimulator]:
    """A simulator served from its own event loop thread, so the CLI can run in a separate process."""
    with serve_in_thread(KsefSimulator(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], strict_contract=True, seed=5)) as sim:
        yield sim
    assert sim.contract_violations == []


def write_invoices(directory: Path, invoices: list[tuple[str, bytes]]) -> None:
    directory.mkdir(parents=True)
    for name, data in invoices:
        (directory / name.replace("/", "_")).write_bytes(data)


def send(sim: KsefSimulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {"KSEF_TOKEN": DEFAULT_TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "send", *args, "--base-url", sim.base_url, "--nip", DEFAULT_NIP],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_send_online_offline_marks_every_invoice_offline(running_sim: KsefSimulator, tmp_path: Path) -> None:
    write_invoices(tmp_path / "in", list(InvoiceFactory(DEFAULT_NIP, seed=61).iter(3)))
    report = tmp_path / "report.json"
    result = send(running_sim, str(tmp_path / "in"), "--online", "--offline", "--report", str(report))
    assert result.returncode == 0, result.stderr
    invoices = json.loads(report.read_text(encoding="utf-8"))["invoices"]
    assert [item["invoicing_mode"] for item in invoices] == ["Offline"] * 3
    assert result.stdout.count("(Offline)") == 3


def test_send_batch_offline_opens_an_offline_session(running_sim: KsefSimulator, tmp_path: Path) -> None:
    write_invoices(tmp_path / "in", list(InvoiceFactory(DEFAULT_NIP, seed=62).iter(3, start=100)))
    report = tmp_path / "report.json"
    result = send(
        running_sim, str(tmp_path / "in"), "--offline", "--report", str(report), "--state-dir", str(tmp_path / "st")
    )
    assert result.returncode == 0, result.stderr
    invoices = json.loads(report.read_text(encoding="utf-8"))["invoices"]
    assert [item["invoicing_mode"] for item in invoices] == ["Offline"] * 3


def test_send_corrects_a_rejected_offline_invoice_once(running_sim: KsefSimulator, tmp_path: Path) -> None:
    good = InvoiceFactory(DEFAULT_NIP, seed=63).make(200)[1]
    original = tmp_path / "original.xml"
    original.write_bytes(broken(good))
    # The original went in an offline batch without local validation; KSeF rejected it (450).
    first = send(
        running_sim, str(original), "--offline", "--no-validate", "--state-dir", str(tmp_path / "st"),
        "--report", str(tmp_path / "batch.json"),
    )  # fmt: skip
    assert first.returncode == 1, first.stderr
    (entry,) = json.loads((tmp_path / "batch.json").read_text(encoding="utf-8"))["invoices"]
    assert (entry["outcome"], entry["error"]["code"], entry["invoicing_mode"]) == ("rejected", 450, "Offline")

    fixed = tmp_path / "fixed.xml"
    fixed.write_bytes(good)
    report = tmp_path / "report.json"
    corrected = send(running_sim, str(fixed), "--online", "--corrects", str(original), "--report", str(report))
    assert corrected.returncode == 0, corrected.stdout + corrected.stderr
    (item,) = json.loads(report.read_text(encoding="utf-8"))["invoices"]
    assert item["accepted"]
    assert item["invoicing_mode"] == "Offline"

    other = tmp_path / "other.xml"
    other.write_bytes(InvoiceFactory(DEFAULT_NIP, seed=64).make(201)[1])
    again = send(running_sim, str(other), "--online", "--corrects", str(original))
    assert again.returncode == 1
    assert f"{other}: rejected technical correction refused by KSeF" in again.stdout
    assert "exception code 21166" in again.stdout


@pytest.mark.parametrize(("count", "flags"), [(1, ()), (2, ("--online",))])
def test_corrects_needs_online_and_one_file(
    running_sim: KsefSimulator, tmp_path: Path, count: int, flags: tuple[str, ...]
) -> None:
    original = tmp_path / "original.xml"
    original.write_bytes(InvoiceFactory(DEFAULT_NIP, seed=65).make(0)[1])
    files = []
    for index in range(count):
        path = tmp_path / f"c{index}.xml"
        path.write_bytes(InvoiceFactory(DEFAULT_NIP, seed=65).make(300 + index)[1])
        files.append(str(path))
    before = running_sim.counters.requests["onlineSession"]
    result = send(running_sim, *files, *flags, "--corrects", str(original))
    assert result.returncode == 2
    assert "--corrects needs --online and exactly one invoice file" in result.stderr
    assert running_sim.counters.requests["onlineSession"] == before
