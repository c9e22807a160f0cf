"""``ksef-async send --feature``: ``X-KSeF-Feature`` from the command line, online and batch, over loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread

from .test_cli_sim import cli, write

BAD_NIP = "1111111112"  # wrong check digit


@pytest.fixture(scope="module")
def running_sim() -> Iterator[KsefSimulator]:
    with serve_in_thread(KsefSimulator(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], strict_contract=True, seed=9)) as sim:
        yield sim
    assert sim.contract_violations == []


def bad_buyer_invoice(seed: int) -> tuple[str, bytes]:
    name, data = InvoiceFactory(DEFAULT_NIP, buyer_nip="1111111111", seed=seed).make(0)
    return name, data.replace(b"<NIP>1111111111</NIP>", f"<NIP>{BAD_NIP}</NIP>".encode())


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_send_feature_rejects_a_bad_buyer_nip(running_sim: KsefSimulator, tmp_path: Path, mode: str) -> None:
    paths = write(tmp_path / "in", [bad_buyer_invoice(41 if mode == "online" else 42)])
    report = tmp_path / "report.json"
    extra = ["--online"] if mode == "online" else ["--state-dir", str(tmp_path / "state")]
    result = cli(
        "send", *map(str, paths), *extra, "--feature", "subject-identifier-validation",
        "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP, "--report", str(report),
        env={"KSEF_TOKEN": DEFAULT_TOKEN},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    text = report.read_text(encoding="utf-8")
    assert "450" in text
    assert BAD_NIP in text
    opened = [s for s in running_sim.state.sessions.values() if s.features]
    assert opened
    assert all(s.features == {"subject-identifier-validation"} for s in opened)
    json.loads(text)


def test_send_malformed_feature_is_a_usage_error(running_sim: KsefSimulator, tmp_path: Path) -> None:
    paths = write(tmp_path / "in", [bad_buyer_invoice(43)])
    for extra in (["--online"], ["--state-dir", str(tmp_path / "state")]):
        result = cli(
            "send", *map(str, paths), *extra, "--feature", "Not A Feature", "--base-url", running_sim.base_url,
            "--nip", DEFAULT_NIP, env={"KSEF_TOKEN": DEFAULT_TOKEN},
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "feature" in result.stderr
