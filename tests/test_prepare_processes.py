"""Prepare in worker processes: same plan as one thread, input order, a failed worker, no main-module re-run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ksef_async.batch import prepare as prepare_module
from ksef_async.batch import prepare_batch_sync
from ksef_async.batch._procs import ProcessWorkers, WorkerFailedError
from ksef_async.batch._worker import Source, Unreadable
from ksef_async.batch.inputs import InvoiceInput, PendingFile
from ksef_async.core.crypto import SessionKey, b64decode, decrypt_cbc, rsa_oaep_decrypt
from ksef_async.core.plan import BatchPlan
from ksef_async.errors import InvoiceError
from ksef_async.testing.invoices import InvoiceFactory

SELLER = "5265877635"
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
POOL = list(InvoiceFactory(SELLER, seed=11, size_kb=4).iter(30))


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two invoices per batch: 30 invoices make 15 batches over 2 processes, well past the start threshold.
    monkeypatch.setattr(prepare_module, "_PROCESS_BATCH", 2)


def _write(directory: Path, items: list[tuple[str, bytes]]) -> Path:
    directory.mkdir()
    for name, data in items:
        (directory / name).write_bytes(data)
    return directory


def _archive(plan: BatchPlan, state: Path) -> zipfile.ZipFile:
    session = plan.sessions[0]
    assert session.encryption is not None
    key = SessionKey(
        rsa_oaep_decrypt(PRIVATE, b64decode(session.encryption.encrypted_symmetric_key)),
        b64decode(session.encryption.initialization_vector),
    )
    plain = b"".join(decrypt_cbc(key, (state / part.file).read_bytes()) for part in session.parts)
    import io  # noqa: PLC0415

    return zipfile.ZipFile(io.BytesIO(plain))


def _forked(pid: int) -> list[int]:
    """The processes ``pid`` has started or forked and not reaped, oldest first (a thread ending meanwhile has none)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _worker_pid(procs: ProcessWorkers, worker: int) -> int:
    """The process of ``worker``: started for it, or forked for it by the one started (Linux, two workers or more)."""
    if len(procs._procs) == len(procs):
        return procs._procs[worker].pid
    supervisor = procs._procs[0].pid
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the supervisor forks the workers, in order, once it has started
        forked = _forked(supervisor)
        if len(forked) == len(procs):
            return forked[worker]
        time.sleep(0.01)
    raise AssertionError("the supervisor forked no workers")


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended and been reaped (a zombie still shows in /proc)."""
    return not Path(f"/proc/{pid}").exists()


def _children() -> set[int] | None:
    """This process's children, where /proc lists them (Linux); ``None`` elsewhere."""
    if not Path(f"/proc/{os.getpid()}/task").exists():
        return None
    return set(_forked(os.getpid()))


def test_processes_give_the_plan_one_thread_gives_in_input_order(tmp_path: Path) -> None:
    source = _write(tmp_path / "in", POOL)
    before = _children()
    by_process = prepare_batch_sync(
        str(source), public_key=PRIVATE.public_key(), state_dir=tmp_path / "p", workers=2, executor="process"
    )
    by_thread = prepare_batch_sync(str(source), public_key=PRIVATE.public_key(), state_dir=tmp_path / "t", workers=1)
    assert by_process.sessions[0].invoices == by_thread.sessions[0].invoices
    assert [e.name for e in by_process.sessions[0].invoices] == sorted(n for n, _ in POOL)
    with _archive(by_process, tmp_path / "p") as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == dict(POOL)
    assert _children() == before  # every worker process has ended


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_run_failing_midway_has_ended_its_threads_and_processes_when_it_raises(tmp_path: Path, executor: str) -> None:
    # Ended before prepare raises, not whenever the garbage collector reaches the abandoned iterator: the caller
    # holds the exception, and with it the frames, for as long as it likes.
    name, data = POOL[15]
    inputs = [*POOL[:15], (name, data.replace(b"<P_2>", b"<P_2x>", 1).replace(b"</P_2>", b"</P_2x>", 1)), *POOL[16:]]
    before = _children()
    with pytest.raises(InvoiceError, match=name) as info:
        prepare_batch_sync(
            inputs,
            public_key=PRIVATE.public_key(),
            state_dir=tmp_path,
            workers=2,
            executor=executor,  # type: ignore[arg-type]
        )
    assert info.value.__traceback__ is not None  # still held here
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ksef-prepare")]
    assert _children() == before


def test_the_default_describes_a_large_validated_run_in_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    real = ProcessWorkers.__init__

    def counting(self: ProcessWorkers, count: int) -> None:
        started.append(count)
        real(self, count)

    monkeypatch.setattr(ProcessWorkers, "__init__", counting)
    prepare_batch_sync(POOL, public_key=PRIVATE.public_key(), state_dir=tmp_path / "a", workers=2)
    assert started == [2]
    # Without validation threads compress (the entries would otherwise cross a pipe), and a run too small to
    # pay for starting processes stays in threads.
    prepare_batch_sync(POOL, public_key=PRIVATE.public_key(), state_dir=tmp_path / "b", workers=2, validate=False)
    prepare_batch_sync(POOL[:6], public_key=PRIVATE.public_key(), state_dir=tmp_path / "c", workers=2)
    assert started == [2]


def test_a_worker_killed_mid_run_costs_no_invoice_and_no_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_send = ProcessWorkers.send
    sent: list[int] = []
    killed: list[int] = []

    def send_then_kill(self: ProcessWorkers, worker: int, *args: object) -> None:
        real_send(self, worker, *args)  # type: ignore[arg-type]
        sent.append(worker)
        if len(sent) == 5:
            killed.append(_worker_pid(self, 1))
            os.kill(killed[0], signal.SIGKILL)  # the worker dies with requests in hand

    monkeypatch.setattr(ProcessWorkers, "send", send_then_kill)
    plan = prepare_batch_sync(POOL, public_key=PRIVATE.public_key(), state_dir=tmp_path, workers=2, executor="process")
    assert [e.name for e in plan.sessions[0].invoices] == [n for n, _ in POOL]
    with _archive(plan, tmp_path) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == dict(POOL)
    assert "prepare worker process 1 failed" in caplog.text
    assert _gone(killed[0])  # reaped, not left a zombie


def test_a_worker_that_stops_answering_is_given_up_and_threads_finish_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_send = ProcessWorkers.send
    stopped: list[int] = []

    def send_then_stop(self: ProcessWorkers, worker: int, *args: object) -> None:
        self.timeout = 0.5
        real_send(self, worker, *args)  # type: ignore[arg-type]
        if worker == 1 and not stopped:
            stopped.append(_worker_pid(self, 1))
            os.kill(stopped[0], signal.SIGSTOP)  # alive, holding its pipes, never answering

    monkeypatch.setattr(ProcessWorkers, "send", send_then_stop)
    before = _children()
    plan = prepare_batch_sync(POOL, public_key=PRIVATE.public_key(), state_dir=tmp_path, workers=2, executor="process")
    assert [e.name for e in plan.sessions[0].invoices] == [n for n, _ in POOL]
    assert "prepare worker process 1 failed: no answer for 0.5 s" in caplog.text
    assert _children() == before
    assert _gone(stopped[0])  # the stopped worker was killed and reaped, not left behind


def test_a_worker_that_takes_no_input_fails_the_send_within_the_timeout() -> None:
    procs = ProcessWorkers(1)
    try:
        procs.timeout = 0.3
        os.kill(_worker_pid(procs, 0), signal.SIGSTOP)
        big: list[Source] = [InvoiceInput("big.xml", b"x" * (4 << 20))]  # far past a pipe's buffer
        with pytest.raises(WorkerFailedError, match=r"took no batch for 0\.3 s"):
            procs.send(0, big, True, 6)
    finally:
        procs.close()


def test_a_worker_reads_the_files_it_is_sent_and_names_one_it_cannot_read(tmp_path: Path) -> None:
    # Files cross the pipe as (name, path): the worker reads them, and one gone since selection comes back as
    # the reason, in its place.
    name, data = POOL[0]
    (tmp_path / name).write_bytes(data)
    batch: list[Source] = [PendingFile(name, str(tmp_path / name), len(data)), PendingFile("gone.xml", "/gone", 9)]
    procs = ProcessWorkers(1)
    try:
        procs.send(0, batch, True, 1)
        described, missing = procs.receive(0)
    finally:
        procs.close()
    assert not isinstance(described, Unreadable)
    entry, problems, deflated = described
    assert entry is not None
    assert (entry[0], entry[7], problems) == (name, str(tmp_path / name), ())
    assert deflated is not None
    assert deflated.size == len(data)
    assert isinstance(missing, Unreadable)
    assert str(missing.error()) == "/gone: no such file or directory"


def test_an_invalid_invoice_stops_the_run_in_order_and_ends_the_workers(tmp_path: Path) -> None:
    broken = ("broken.xml", POOL[0][1].replace(b"<P_2>", b"<P_2x>", 1))
    inputs = [*POOL[:17], broken, *POOL[17:]]
    with pytest.raises(InvoiceError) as info:
        prepare_batch_sync(
            inputs, public_key=PRIVATE.public_key(), state_dir=tmp_path / "s", workers=2, executor="process"
        )
    assert [p.file for p in info.value.problems] == ["broken.xml"]
    assert list((tmp_path / "s").iterdir()) == []


def test_a_script_without_a_main_guard_runs_once(tmp_path: Path) -> None:
    # A spawned multiprocessing child imports the caller's main module; these workers must not: a script
    # without ``if __name__ == "__main__"`` would run again in every worker.
    source = _write(tmp_path / "in", POOL)
    runs = tmp_path / "runs.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from cryptography.hazmat.primitives.asymmetric import rsa
            from ksef_async.batch import prepare as prepare_module
            from ksef_async.batch import prepare_batch_sync

            with open({str(runs)!r}, "a") as log:
                log.write("run\\n")
            prepare_module._PROCESS_BATCH = 2
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
            plan = prepare_batch_sync({str(source)!r}, public_key=key, state_dir={str(tmp_path / "s")!r},
                                      workers=2, executor="process")
            print(plan.invoice_count)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(POOL))
    assert runs.read_text() == "run\n"


def test_workers_that_cannot_start_leave_the_run_to_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    plan = prepare_batch_sync(POOL, public_key=PRIVATE.public_key(), state_dir=tmp_path / "s", workers=2)
    assert [e.name for e in plan.sessions[0].invoices] == [n for n, _ in POOL]
    assert "cannot start" in caplog.text


def test_workers_started_for_a_small_directory_end_unused(tmp_path: Path) -> None:
    # A directory's workers start before its walk; three invoices are too few for them, and threads describe them.
    source = _write(tmp_path / "in", POOL[:3])
    before = _children()
    plan = prepare_batch_sync(str(source), public_key=PRIVATE.public_key(), state_dir=tmp_path / "s", workers=2)
    assert [e.name for e in plan.sessions[0].invoices] == sorted(n for n, _ in POOL[:3])
    # Not waited for (a supervisor may still be starting), but ended and reaped soon after.
    deadline = time.monotonic() + 60
    while _children() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _children() == before


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked by one started process on Linux only")
def test_workers_end_when_the_program_that_started_them_is_killed(tmp_path: Path) -> None:
    # kill -9 of the caller: the supervisor sees its stdin end, kills its workers and reaps them.
    script = tmp_path / "starts_workers.py"
    script.write_text(
        "import time\n"
        "from ksef_async.batch._procs import ProcessWorkers\n"
        "procs = ProcessWorkers(2)\n"
        "print(procs._procs[0].pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    program = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert program.stdout is not None
        supervisor = int(program.stdout.readline())
        deadline = time.monotonic() + 60
        while len(workers := _forked(supervisor)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(workers) == 2
    finally:
        program.kill()
        program.wait()

    def ended() -> bool:  # the workers reaped by the supervisor, and the supervisor gone (or a zombie of init's)
        status = Path(f"/proc/{supervisor}/stat")
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone while being read
            if status.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return False
        return all(_gone(pid) for pid in workers)

    deadline = time.monotonic() + 60
    while not ended() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended()
