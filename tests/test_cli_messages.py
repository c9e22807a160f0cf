"""CLI messages: server and file text printed as data, interrupts before the plan, NIP checksums refused locally."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from rich.console import Console

from ksef_async.batch.events import PartRetried, SessionStatusChanged
from ksef_async.batch.reconcile import BatchReport
from ksef_async.cli._commands import app
from ksef_async.cli._connection import Connection
from ksef_async.cli._progress import BatchProgress, data_console, print_summary
from ksef_async.cli.send_batch import EXIT_INTERRUPTED, BatchRun, finish_batch
from ksef_async.core.identifiers import nip_problem
from ksef_async.errors import ConfigurationError

HOSTILE = "[/x] [bold]not markup[/bold] [link=http://evil]"


def run_cli(*args: str) -> int:
    result = app(list(args), result_action="return_value")
    assert isinstance(result, int)
    return result


def _captured() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    console = data_console()
    console.file = buffer
    return console, buffer


def test_server_text_in_the_summary_prints_as_data() -> None:
    entry = SimpleNamespace(file=f"in/{HOSTILE}.xml", outcome="rejected", error={"code": 450, "description": HOSTILE})
    session = {
        "index": 1, "referenceNumber": HOSTILE, "statusCode": 445, "statusDescription": HOSTILE,
        "invoices": 1, "parts": 1, "upo": [],
    }  # fmt: skip
    summary = {"invoices": 1, "accepted": 0, "duplicate": 0, "rejected": 1, "invalid": 0, "unknown": 0}
    report = SimpleNamespace(
        to_json=lambda: {"summary": summary}, all_accepted=False, entries=[entry], sessions=[session], timings={}
    )
    console, buffer = _captured()
    print_summary(cast("BatchReport", report), console)
    out = buffer.getvalue()
    assert f"rejected [450] {HOSTILE}" in out
    assert out.count("[/x]") >= 3


def test_server_text_in_progress_lines_prints_as_data() -> None:
    console, buffer = _captured()
    with BatchProgress(console) as progress:
        progress.handle(PartRetried(session=1, ordinal=2, attempt=1, error=HOSTILE, wait=0.5))
        progress.handle(SessionStatusChanged(session=1, reference_number=HOSTILE, state="failed", code=445))
    out = buffer.getvalue()
    assert f"part 2: {HOSTILE}, retry 1" in out
    assert f"session 1 {HOSTILE}: failed [445]" in out


def test_an_interrupt_before_the_plan_exists_does_not_advise_resume(tmp_path: Path) -> None:
    console, buffer = _captured()
    code = finish_batch(
        BatchRun(tmp_path, None, interrupted=True), report_path=None, console=console, resume_hint="RESUME-HINT"
    )
    assert code == EXIT_INTERRUPTED
    out = buffer.getvalue()
    assert "RESUME-HINT" not in out
    assert "nothing was sent" in out
    assert "plan is saved" not in out


def test_an_interrupt_after_the_plan_exists_advises_resume(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text("{}", encoding="ascii")
    console, buffer = _captured()
    code = finish_batch(
        BatchRun(tmp_path, None, interrupted=True), report_path=None, console=console, resume_hint="RESUME-HINT"
    )
    assert code == EXIT_INTERRUPTED
    assert "RESUME-HINT" in buffer.getvalue()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("5265877636", "the check digit is 6, the checksum gives 5"),
        ("1234567890", "no check digit exists"),
        ("123", "not a NIP"),
    ],
)
def test_a_bad_nip_checksum_is_refused_locally_with_its_reason(value: str, reason: str) -> None:
    problem = nip_problem(value)
    assert problem is not None
    assert reason in problem
    with pytest.raises(ConfigurationError, match=f"--nip: .*{reason}"):
        Connection(base_url="http://127.0.0.1:9/v2", nip=value, token="t").context()


def test_a_good_nip_passes() -> None:
    assert nip_problem("5265877635") is None
    assert Connection(base_url="http://127.0.0.1:9/v2", nip="5265877635", token="t").context().value == "5265877635"


def test_cli_refuses_a_bad_nip_before_connecting(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    invoice = tmp_path / "x.xml"
    invoice.write_bytes(
        (Path(__file__).parent / "data" / "samples" / "invoices" / "fa3-invoice-sample.xml").read_bytes()
    )
    # Port 9 (discard) is never contacted: the NIP is refused first.
    code = run_cli("send", str(invoice), "--online", "--base-url", "http://127.0.0.1:9/v2", "--nip", "5265877636",
                   "--token", "t")  # fmt: skip
    assert code == 2
    assert "--nip: '5265877636' is not a valid NIP: the check digit is 6" in capsys.readouterr().err
    assert run_cli("query", "--from", "2026-01-01", "--seller-nip", "5265877636", "--base-url",
                   "http://127.0.0.1:9/v2", "--nip", "5265877635", "--token", "t") == 2  # fmt: skip
    assert "--seller-nip" in capsys.readouterr().err


def test_help_recommends_the_environment_for_secrets() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "send", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    help_text = " ".join(done.stdout.split())
    assert "Prefer the KSEF_TOKEN environment variable" in help_text
    assert "visible to other users in the process list" in help_text
    assert "Prefer the KSEF_KEY_PASSWORD environment variable" in help_text
    assert "4 when a local file could not be read or written" in help_text
