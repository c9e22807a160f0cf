"""Crash and resume: kill -9 mid-upload, an upload window that passed, and what the state directory keeps."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import attrs
import pytest

from ksef_async.batch.events import BatchEvent, PartUploaded
from ksef_async.batch.prepare import save_plan
from ksef_async.core.plan import BatchPlan, SessionState
from ksef_async.testing.invoices import write_invoices
from ksef_async.testing.simulator import KsefSimulator

from .conftest import NIP, TOKEN, SimFactory, accepted_per_number, batch_sessions, fast_config, sender_for

pytestmark = pytest.mark.anyio

_SEND = """
import sys
from pathlib import Path
from ksef_async.cli._connection import Connection
from ksef_async.cli.send_batch import send_batch
base, inputs, state = sys.argv[1:4]
sys.exit(send_batch([Path(inputs)], Connection(base_url=base, nip={nip!r}, token={token!r}),
                    state_dir=Path(state), part_size=20_000, concurrency=2, validate=False))
"""
_RESUME = """
import sys
from pathlib import Path
from ksef_async.cli._connection import Connection
from ksef_async.cli.resume import resume
base, state, report = sys.argv[1:4]
sys.exit(resume(Path(state), connection=Connection(base_url=base, nip={nip!r}, token={token!r}),
                report=Path(report), concurrency=2))
"""


def _plan_records_an_open_session(state: Path) -> bool:
    try:
        plan = BatchPlan.from_json((state / "plan.json").read_bytes())
    except FileNotFoundError:
        return False
    return any(s.state in {SessionState.OPENED, SessionState.UPLOADING} for s in plan.sessions)


def _uploaded_parts(sim: KsefSimulator) -> int:
    return sum(1 for s in batch_sessions(sim) for p in s.parts.values() if p.path is not None)


async def test_kill_9_mid_upload_then_resume_sends_each_invoice_once(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(NIP, TOKEN)], seed=5, rate_limits="off", faults="upload-delay=0.3"
    )
    write_invoices(tmp_path / "in", 300, NIP, 4, seed=21)
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = _SEND.format(nip=NIP, token=TOKEN)
    sender = await anyio.open_process(
        [sys.executable, "-c", code, sim.base_url, str(tmp_path / "in"), str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        with anyio.fail_after(40):
            # Mid-upload, once the plan records an open session (a kill during preparation leaves no plan).
            while _uploaded_parts(sim) < 2 or not _plan_records_an_open_session(state):
                assert sender.returncode is None, "the sender finished before it could be killed"
                await anyio.sleep(0.02)
        os.kill(sender.pid, signal.SIGKILL)
        await sender.wait()
    finally:
        if sender.returncode is None:
            sender.kill()
            await sender.wait()
    assert sender.returncode == -signal.SIGKILL
    assert not sim.state.invoices, "nothing may be accepted before the session is closed"
    plan = BatchPlan.from_json((state / "plan.json").read_bytes())
    assert {s.state for s in plan.sessions} & {SessionState.OPENED, SessionState.UPLOADING}
    # The signed URLs live only in the upload records, owner-only; never in the plan.
    assert "sig=" not in (state / "plan.json").read_text()
    records = sorted(state.glob("s*-upload.json"))
    assert records
    assert all(stat.S_IMODE(r.stat().st_mode) == 0o600 for r in records)
    assert stat.S_IMODE((state / "plan.json").stat().st_mode) == 0o600

    report_path = tmp_path / "report.json"
    resumer = await anyio.run_process(
        [sys.executable, "-c", _RESUME.format(nip=NIP, token=TOKEN), sim.base_url, str(state), str(report_path)],
        check=False,
        env=env,
    )
    assert resumer.returncode == 0, resumer.stderr.decode()[-3000:]
    counts = accepted_per_number(sim)
    assert len(counts) == 300
    assert set(counts.values()) == {1}
    report = json.loads(report_path.read_text())
    assert report["summary"]["accepted"] == 300
    assert len(report["invoices"]) == 300
    assert "sig=" not in report_path.read_text()
    # The session that was killed mid-upload was resumed, not replaced: no extra batch session was opened.
    assert len(batch_sessions(sim)) == len(plan.sessions)
    assert not list(state.glob("s*-upload.json")), "upload records are deleted once their session is closed"


async def test_resume_after_the_upload_window_passed_uses_a_new_session(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=6, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 120, NIP, 4, seed=22)
    state = tmp_path / "state"
    config = fast_config(part_size=20_000, concurrency=1)
    uploaded: list[PartUploaded] = []

    scope = anyio.CancelScope()

    def crash_after_two_parts(event: BatchEvent) -> None:
        if isinstance(event, PartUploaded):
            uploaded.append(event)
            if len(uploaded) == 2:
                scope.cancel()  # the process dies here: nothing after this point runs

    async with sender_for(sim, state, config, crash_after_two_parts, now=sim.clock.now_dt) as sender:
        with scope:
            await sender.send([str(p) for p in paths])
    assert scope.cancelled_caught
    first = batch_sessions(sim)
    assert len(first) == 1
    assert first[0].closed is None
    parts = len(first[0].parts)
    assert parts > 2
    # More than the whole window (20 min x parts) passes before anyone resumes (but less than KSeF's 12 h).
    sim.clock.advance(20 * 60 * parts + 600)
    async with sender_for(sim, state, config, now=sim.clock.now_dt) as sender:
        report = await sender.resume()
    assert report.all_accepted, report.to_json()["summary"]
    counts = accepted_per_number(sim)
    assert len(counts) == 120
    assert set(counts.values()) == {1}
    sessions = batch_sessions(sim)
    assert len(sessions) == 2
    old = next(s for s in sessions if s.reference_number == first[0].reference_number)
    assert old.closed is None or old.final_code == 440, "the abandoned session is never closed by the client"
    assert {e.session_reference for e in report.entries} == {s.reference_number for s in sessions if s is not old}


async def test_resume_of_a_finished_send_changes_nothing(ksef_simulator_factory: SimFactory, tmp_path: Path) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=8, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 20, NIP, 4, seed=23)
    state = tmp_path / "state"
    async with sender_for(sim, state) as sender:
        first = await sender.send([str(p) for p in paths])
    async with sender_for(sim, state) as sender:
        again = await sender.resume()
    assert first.all_accepted
    assert again.all_accepted
    assert [e.ksef_number for e in again.entries] == [e.ksef_number for e in first.entries]
    assert len(batch_sessions(sim)) == 1
    assert len(sim.state.invoices) == 20
    assert not list(state.glob("*.aes")), "the spool of a finished session is deleted"


async def test_crash_after_open_before_the_plan_records_it_adopts_the_session(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=12, rate_limits="off")
    paths = write_invoices(tmp_path / "in", 60, NIP, 4, seed=24)
    state = tmp_path / "state"
    config = fast_config(part_size=20_000, concurrency=1)
    scope = anyio.CancelScope()

    def crash_at_first_part(event: BatchEvent) -> None:
        if isinstance(event, PartUploaded):
            scope.cancel()

    async with sender_for(sim, state, config, crash_at_first_part) as sender:
        with scope:
            await sender.send([str(p) for p in paths])
    # Leave the plan as a crash right after POST /sessions/batch answered would: the session only "prepared".
    plan = BatchPlan.from_json((state / "plan.json").read_bytes())
    (session,) = plan.sessions
    reverted = attrs.evolve(
        session,
        state=SessionState.PREPARED,
        reference_number=None,
        upload_deadline=None,
        status_code=None,
        parts=tuple(attrs.evolve(p, uploaded=False) for p in session.parts),
    )
    save_plan(state, attrs.evolve(plan, sessions=(reverted,)))
    assert (state / "s001-upload.json").exists()
    async with sender_for(sim, state, config) as sender:
        report = await sender.resume()
    assert report.all_accepted
    assert len(batch_sessions(sim)) == 1, "the session opened before the crash was adopted, not opened again"
    assert {e.session_reference for e in report.entries} == {session.reference_number}
    assert set(accepted_per_number(sim).values()) == {1}


async def test_sigterm_mid_upload_exits_3_and_resume_finishes(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(NIP, TOKEN)], seed=13, rate_limits="off", faults="upload-delay=0.3"
    )
    write_invoices(tmp_path / "in", 150, NIP, 4, seed=25)
    state = tmp_path / "state"
    sender = await anyio.open_process(
        [sys.executable, "-c", _SEND.format(nip=NIP, token=TOKEN), sim.base_url, str(tmp_path / "in"), str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with anyio.fail_after(40):
            while _uploaded_parts(sim) < 1 or not _plan_records_an_open_session(state):
                assert sender.returncode is None, "the sender finished before it could be interrupted"
                await anyio.sleep(0.02)
        sender.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await sender.wait()
        assert sender.stderr is not None
        err = (await sender.stderr.receive(1 << 20)).decode()
    finally:
        if sender.returncode is None:
            sender.kill()
            await sender.wait()
    assert sender.returncode == 3, err[-2000:]
    assert f"ksef-async resume {state}" in err
    assert not sim.state.invoices
    async with sender_for(sim, state) as resumer:
        report = await resumer.resume()
    assert report.all_accepted
    counts = accepted_per_number(sim)
    assert len(counts) == 150
    assert set(counts.values()) == {1}


def test_resume_without_a_plan_says_nothing_was_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ksef_async.cli._connection import Connection  # noqa: PLC0415
    from ksef_async.cli.resume import resume  # noqa: PLC0415

    (tmp_path / "s001-part-0001.aes").write_bytes(b"x" * 16)  # a kill during preparation leaves parts, no plan
    code = resume(tmp_path, connection=Connection(base_url="http://127.0.0.1:9/v2", nip=NIP, token=TOKEN))
    assert code == 2
    assert "nothing was sent" in capsys.readouterr().err
