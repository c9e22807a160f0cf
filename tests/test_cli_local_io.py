"""Local file errors in the CLI: outputs checked before sending, one line and exit 4 instead of a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from ksef_async.batch.inputs import DuplicateCheck
from ksef_async.cli._commands import app
from ksef_async.cli._connection import EXIT_LOCAL_IO, run_async
from ksef_async.cli._files import write_output
from ksef_async.core.plan import BatchPlan
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread


@pytest.fixture(scope="module")
def running_sim() -> Iterator[KsefSimulator]:
    with serve_in_thread(KsefSimulator(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], strict_contract=True, seed=5)) as sim:
        yield sim
    assert sim.contract_violations == []


def run_cli(*args: str) -> int:
    result = app(list(args), result_action="return_value")
    assert isinstance(result, int)
    return result


def _invoice(directory: Path, seed: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    ((name, data),) = list(InvoiceFactory(DEFAULT_NIP, seed=seed).iter(1))
    path = directory / name.replace("/", "_")
    path.write_bytes(data)
    return path


def _sent(sim: KsefSimulator) -> int:
    return sim.counters.operations["post_sessions_online"] + sim.counters.operations["post_sessions_batch"]


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_an_unwritable_report_is_refused_before_anything_is_sent(
    running_sim: KsefSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    monkeypatch.setenv("KSEF_TOKEN", DEFAULT_TOKEN)
    invoice = _invoice(tmp_path / "in", seed=31 if mode == "online" else 32)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="ascii")
    before = _sent(running_sim)
    extra = ["--online"] if mode == "online" else ["--state-dir", str(tmp_path / "state")]
    code = run_cli(
        "send", str(invoice), *extra, "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
        "--report", str(blocker / "report.json"),
    )  # fmt: skip
    assert code == EXIT_LOCAL_IO
    assert f"--report {blocker / 'report.json'}" in capsys.readouterr().err
    assert _sent(running_sim) == before  # nothing was sent: a rerun after fixing the path is safe


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc: a directory nobody can write in")
@pytest.mark.parametrize("report", ["/proc/report.json", "/proc/ksef-async-missing/report.json"])
def test_a_report_in_a_directory_that_refuses_files_is_refused_before_sending(
    running_sim: KsefSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    report: str,
) -> None:
    # /proc refuses new files and directories even to root, for whom permission bits (os.access) say yes.
    monkeypatch.setenv("KSEF_TOKEN", DEFAULT_TOKEN)
    invoice = _invoice(tmp_path / "in", seed=34)
    before = _sent(running_sim)
    code = run_cli("send", str(invoice), "--online", "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
                   "--report", report)  # fmt: skip
    assert code == EXIT_LOCAL_IO
    assert f"--report {report}" in capsys.readouterr().err
    assert _sent(running_sim) == before


def test_a_report_that_fails_after_acceptance_exits_4_not_1(
    running_sim: KsefSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The check passed, then the disk filled up: one line naming the file, exit 4 ("rejected" is 1).
    monkeypatch.setenv("KSEF_TOKEN", DEFAULT_TOKEN)
    invoice = _invoice(tmp_path / "in", seed=33)
    report = tmp_path / "out" / "report.json"

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code = run_cli("send", str(invoice), "--online", "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
                   "--report", str(report))  # fmt: skip
    captured = capsys.readouterr()
    assert code == EXIT_LOCAL_IO
    assert ": accepted " in captured.out
    assert f"ksef-async: {report}: No space left on device" in captured.err
    assert list(report.parent.iterdir()) == []  # no temporary file left behind


def test_get_output_into_an_impossible_directory_is_refused_before_the_download(
    running_sim: KsefSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KSEF_TOKEN", DEFAULT_TOKEN)
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="ascii")
    before = running_sim.counters.operations["get_invoices_ksef_by_ksef_number"]
    code = run_cli("get", "5265877635-20260301-0100000000AB-CD", "--output", str(blocker / "sub" / "x.xml"),
                   "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP)  # fmt: skip
    assert code == EXIT_LOCAL_IO
    assert "--output" in capsys.readouterr().err
    assert running_sim.counters.operations["get_invoices_ksef_by_ksef_number"] == before


def test_run_async_turns_an_os_error_into_one_line_and_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/spool/part-1.aes")

    assert run_async(main, lambda _: 0) == EXIT_LOCAL_IO
    assert capsys.readouterr().err == "ksef-async: /spool/part-1.aes: No space left on device\n"


def test_write_output_removes_its_temporary_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"old")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space") as info:
        write_output(target, b"new")
    assert info.value.filename == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    assert target.read_bytes() == b"old"


def test_a_non_utf8_file_name_is_refused_for_that_file_with_its_reason(tmp_path: Path) -> None:
    name = os.fsdecode(b"faktura-\xff.xml")
    problem = DuplicateCheck().check(name, "sha")
    assert problem is not None
    assert problem.rule == "name"
    assert "not valid UTF-8" in problem.reason
    problem.file.encode("utf-8")  # printable


def test_send_with_a_non_utf8_file_name_names_it_instead_of_a_traceback(
    running_sim: KsefSimulator, tmp_path: Path
) -> None:
    source = _invoice(tmp_path / "in", seed=34)
    odd = tmp_path / "in" / os.fsdecode(b"faktura-\xff.xml")
    odd.write_bytes(source.read_bytes().replace(b"FV/", b"FX/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {"KSEF_TOKEN": DEFAULT_TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "send", str(tmp_path / "in"), "--base-url", running_sim.base_url,
         "--nip", DEFAULT_NIP, "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=300, env=env, check=False, errors="backslashreplace",
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert "not valid UTF-8" in done.stdout + done.stderr
    assert done.returncode == 1


def test_save_plan_on_a_full_disk_keeps_the_old_plan_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ksef_async.batch import prepare  # noqa: PLC0415

    (tmp_path / "plan.json").write_bytes(b"old plan")

    class FullDisk:
        def json_chunks(self, memo: object = None) -> Iterator[str]:
            yield "x" * 100_000  # partly written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        prepare.save_plan(tmp_path, cast("BatchPlan", FullDisk()))
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    assert (tmp_path / "plan.json").read_bytes() == b"old plan"


def test_a_device_or_fifo_output_is_refused_before_sending_and_never_replaced(
    running_sim: KsefSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Renaming the report over a device put a regular file in its place (as root: /dev/full became a file).
    monkeypatch.setenv("KSEF_TOKEN", DEFAULT_TOKEN)
    invoice = _invoice(tmp_path / "in", seed=34)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    link = tmp_path / "stdout.json"
    link.symlink_to(fifo)
    before = _sent(running_sim)
    for target in (fifo, link):
        code = run_cli("send", str(invoice), "--online", "--base-url", running_sim.base_url, "--nip", DEFAULT_NIP,
                       "--report", str(target))  # fmt: skip
        assert code == EXIT_LOCAL_IO
        assert f"--report {target}: not a regular file" in capsys.readouterr().err
    assert _sent(running_sim) == before
    with pytest.raises(OSError, match="not a regular file") as info:
        write_output(fifo, b"{}")
    assert info.value.filename == str(fifo)
    assert fifo.is_fifo()
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "pipe.json", "stdout.json"]


def test_a_symlinked_output_replaces_the_file_it_names_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "reports" / "report.json"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "report.json"
    link.symlink_to(real)
    write_output(link, b"new")
    assert link.is_symlink()
    assert real.read_bytes() == b"new"
    assert sorted(p.name for p in real.parent.iterdir()) == ["report.json"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a link owned by another user")
def test_another_users_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    os.lchown(link, 65534, 65534)  # planted by someone else in a shared directory
    with pytest.raises(OSError, match="owned by another user"):
        write_output(link, b"overwritten?")
    assert victim.read_bytes() == b"precious"
    assert link.is_symlink()
