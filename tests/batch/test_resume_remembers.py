"""`ksef-async send` killed with SIGKILL, then `ksef-async resume DIR` with only KSEF_TOKEN in the environment."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ksef_async.core.connection_record import CONNECTION_FILE, ConnectionRecord
from ksef_async.core.plan import BatchPlan, SessionState
from ksef_async.testing.invoices import write_invoices
from ksef_async.testing.simulator import KsefSimulator

from .conftest import NIP, TOKEN, SimFactory, accepted_per_number, batch_sessions

pytestmark = pytest.mark.anyio


def _bare_env(**values: str) -> dict[str, str]:
    """The environment without any KSEF_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")}
    return env | {"PYTHONUNBUFFERED": "1"} | values


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ksef_async.cli", *args]


def _open_session_recorded(state: Path) -> bool:
    try:
        plan = BatchPlan.from_json((state / "plan.json").read_bytes())
    except FileNotFoundError:
        return False
    return any(s.state in {SessionState.OPENED, SessionState.UPLOADING} for s in plan.sessions)


def _uploaded_parts(sim: KsefSimulator) -> int:
    return sum(1 for s in batch_sessions(sim) for p in s.parts.values() if p.path is not None)


async def test_send_killed_then_resume_with_only_the_token_finishes_exactly_once(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(NIP, TOKEN)], seed=31, rate_limits="off", faults="upload-delay=0.3"
    )
    write_invoices(tmp_path / "in", 200, NIP, 4, seed=33)
    state = tmp_path / "state"
    send_env = _bare_env(KSEF_BASE_URL=sim.base_url, KSEF_NIP=NIP, KSEF_TOKEN=TOKEN)
    args = ("send", str(tmp_path / "in"), "--state-dir", str(state), "--part-size", "20000", "--concurrency", "2")
    sender = await anyio.open_process(
        _cli(*args, "--no-validate"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=send_env
    )
    try:
        with anyio.fail_after(60):
            while _uploaded_parts(sim) < 2 or not _open_session_recorded(state):
                assert sender.returncode is None, "send finished before it could be killed"
                await anyio.sleep(0.02)
        os.kill(sender.pid, signal.SIGKILL)
        await sender.wait()
    finally:
        if sender.returncode is None:
            sender.kill()
            await sender.wait()
    assert sender.returncode == -signal.SIGKILL
    assert not sim.state.invoices, "nothing is accepted before a session is closed"

    # The state directory remembers where and how, never the token.
    record_file = state / CONNECTION_FILE
    assert stat.S_IMODE(record_file.stat().st_mode) == 0o600
    assert TOKEN not in record_file.read_text()
    record = ConnectionRecord.from_json(record_file.read_bytes())
    assert (record.base_url, record.context_type, record.context_value) == (sim.base_url, "Nip", NIP)
    assert record.auth_method == "token"

    # Without the secret: one line naming the variable, exit 2, nothing sent.
    missing = await anyio.run_process(_cli("resume", str(state)), check=False, env=_bare_env())
    err = missing.stderr.decode()
    assert missing.returncode == 2, err
    assert "KSEF_TOKEN" in err
    assert "the KSeF token" in err
    assert not sim.state.invoices

    # With only KSEF_TOKEN: the recorded server and context are used and the work is finished.
    report = tmp_path / "report.json"
    done = await anyio.run_process(
        _cli("resume", str(state), "--report", str(report)), check=False, env=_bare_env(KSEF_TOKEN=TOKEN)
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    counts = accepted_per_number(sim)
    assert len(counts) == 200
    assert set(counts.values()) == {1}, "every invoice accepted exactly once"
    assert json.loads(report.read_text())["summary"]["accepted"] == 200
    assert TOKEN not in done.stdout.decode() + done.stderr.decode()


async def test_resume_refuses_another_context_than_the_recorded_one(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=32, rate_limits="off")
    write_invoices(tmp_path / "in", 3, NIP, 4, seed=34)
    state = tmp_path / "state"
    env = _bare_env(KSEF_BASE_URL=sim.base_url, KSEF_NIP=NIP, KSEF_TOKEN=TOKEN)
    sent = await anyio.run_process(_cli("send", str(tmp_path / "in"), "--state-dir", str(state)), check=False, env=env)
    assert sent.returncode == 0, sent.stderr.decode()[-2000:]
    other = await anyio.run_process(
        _cli("resume", str(state), "--nip", "5261040828"), check=False, env=_bare_env(KSEF_TOKEN=TOKEN)
    )
    assert other.returncode == 2
    assert f"Nip {NIP}" in other.stderr.decode()
    assert "5261040828" in other.stderr.decode()


async def _issued_invoice_numbers(base_url: str) -> list[str]:
    """P_2 of every invoice KSeF holds as issued by NIP, through the API (the simulator is another process)."""
    import datetime as dt  # noqa: PLC0415

    from ksef_async import KsefClient, KsefTokenCredentials  # noqa: PLC0415
    from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters  # noqa: PLC0415
    from ksef_async.retrieval import iter_metadata  # noqa: PLC0415

    now = dt.datetime.now(dt.UTC)
    filters = InvoiceQueryFilters(
        subject_type="Subject1",
        date_range=InvoiceQueryDateRange(date_type="Invoicing", from_=now - dt.timedelta(days=1), to=now),
    )
    async with KsefClient(base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP) as client:
        return [item.invoice_number async for item in iter_metadata(client.retrieval, filters)]


async def test_against_a_simulator_process_send_killed_and_resumed_with_only_the_token(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    server = await anyio.open_process(
        [sys.executable, str(Path(__file__).with_name("_sim_server.py")), str(ready), "upload-delay=0.3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with anyio.fail_after(60):
            while not ready.exists():
                assert server.returncode is None, "the simulator process died"
                await anyio.sleep(0.05)
        base_url = json.loads(ready.read_text())["base_url"]
        write_invoices(tmp_path / "in", 120, NIP, 4, seed=62)
        state = tmp_path / "state"
        sender = await anyio.open_process(
            _cli("send", str(tmp_path / "in"), "--state-dir", str(state), "--part-size", "20000", "--no-validate"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_bare_env(KSEF_BASE_URL=base_url, KSEF_NIP=NIP, KSEF_TOKEN=TOKEN),
        )
        try:
            with anyio.fail_after(60):
                while not _open_session_recorded(state):  # mid-upload: uploads take 0.3 s each
                    assert sender.returncode is None, "send finished before it could be killed"
                    await anyio.sleep(0.02)
            os.kill(sender.pid, signal.SIGKILL)
            await sender.wait()
        finally:
            if sender.returncode is None:
                sender.kill()
                await sender.wait()
        assert sender.returncode == -signal.SIGKILL
        assert await _issued_invoice_numbers(base_url) == []
        done = await anyio.run_process(
            _cli("resume", str(state), "--report", str(tmp_path / "report.json")),
            check=False,
            env=_bare_env(KSEF_TOKEN=TOKEN),
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        numbers = await _issued_invoice_numbers(base_url)
        assert len(numbers) == len(set(numbers)) == 120, "every invoice in KSeF exactly once"
        assert json.loads((tmp_path / "report.json").read_text())["summary"]["accepted"] == 120
    finally:
        server.kill()
        await server.wait()
