"""`ksef-async demo`: the README's first command sends generated invoices to an embedded simulator and exits 0."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

# Until the command registry imports them, load the batch commands before running the CLI entry point.
_CLI = "import ksef_async.cli.demo, ksef_async.cli.resume; from ksef_async.cli import main; main()"


def test_demo_sends_every_invoice_and_reports_where_things_are(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _CLI, "demo", "--invoices", "200", "--state-dir", str(state), "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert elapsed < 60
    err = result.stderr
    assert "200 invoices: 200 accepted" in err
    for stage in ("prepare", "upload", "process", "results", "upo"):
        assert stage in err
    report = json.loads((state / "report.json").read_text())
    assert report["summary"]["accepted"] == 200
    assert len(report["invoices"]) == 200
    upo = [path for session in report["sessions"] for path in session["upo"]]
    assert upo
    assert all(Path(p).read_bytes().startswith(b"<?xml") for p in upo)
    assert f"report: {state / 'report.json'}" in err
