"""A send mixing valid, invalid, repeated and already-sent invoices: the report is right for each one, exit 1."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import anyio
import anyio.to_thread
import pytest
from rich.console import Console

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.engine import BatchClient, BatchSender
from ksef_async.batch.events import BatchEvent, PartUploaded
from ksef_async.cli._connection import Connection
from ksef_async.cli.send_batch import send_batch
from ksef_async.client import KsefClient
from ksef_async.errors import InvoiceError
from ksef_async.models import PartUploadRequest
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator import KsefSimulator

from .conftest import NIP, TOKEN, SimFactory, accepted_per_number, fast_config, sender_for

pytestmark = pytest.mark.anyio


async def test_mixed_set_report_and_exit_code(ksef_simulator_factory: SimFactory, tmp_path: Path) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=9, rate_limits="off")
    earlier = InvoiceFactory(NIP, seed=31, size_kb=4)
    fresh = InvoiceFactory(NIP, seed=32, size_kb=4)
    first_dir = tmp_path / "first"
    first_dir.mkdir()
    for name, data in earlier.iter(3):
        (first_dir / name).write_bytes(data)
    async with sender_for(sim, tmp_path / "state1") as sender:
        first = await sender.send(str(first_dir))
    assert first.all_accepted
    original = {e.file: e.ksef_number for e in first.entries}

    inputs = tmp_path / "second"
    inputs.mkdir()
    valid = dict(fresh.iter(4))
    for name, data in valid.items():
        (inputs / name).write_bytes(data)
    resent = dict(list(earlier.iter(3))[:2])  # sent before: KSeF answers 440 with the original number
    for name, data in resent.items():
        (inputs / name).write_bytes(data)
    bad_name, bad_data = fresh.make(100)
    broken = re.sub(rb"<P_1>[^<]*</P_1>", b"<P_1>not-a-date</P_1>", bad_data, count=1)
    assert broken != bad_data
    (inputs / "a-broken.xml").write_bytes(broken)
    copy_of = min(valid)
    (inputs / "zz-copy.xml").write_bytes(valid[copy_of])  # the same bytes twice in one send
    del bad_name

    report_path = tmp_path / "report.json"
    files = sorted(inputs.iterdir())
    connection = Connection(base_url=sim.base_url, nip=NIP, token=TOKEN)

    def run() -> int:
        return send_batch(
            files,
            connection,
            report=report_path,
            skip_invalid=True,
            state_dir=tmp_path / "state2",
            console=Console(stderr=True, width=120),
        )

    code = await anyio.to_thread.run_sync(run)
    assert code == 1
    report = json.loads(report_path.read_text())
    entries = {e["file"]: e for e in report["invoices"]}
    assert len(report["invoices"]) == 8
    for name in valid:
        assert entries[name]["outcome"] == "accepted"
        assert entries[name]["ksef_number"]
        assert entries[name]["session_reference"]
    for name in resent:
        assert entries[name]["outcome"] == "duplicate"
        assert entries[name]["ksef_number"] == original[name]
        assert entries[name]["error"] is None
    assert entries["a-broken.xml"]["outcome"] == "invalid"
    assert "P_1" in entries["a-broken.xml"]["error"]["description"]
    assert entries["zz-copy.xml"]["outcome"] == "invalid"
    assert entries["zz-copy.xml"]["error"]["details"] == ["duplicate"]
    assert copy_of in entries["zz-copy.xml"]["error"]["description"]
    assert report["summary"] == {
        "invoices": 8,
        "accepted": 4,
        "duplicate": 2,
        "rejected": 0,
        "invalid": 2,
        "unknown": 0,
    }
    # KSeF holds each invoice number once: the re-sent ones were not accepted again.
    counts = accepted_per_number(sim)
    assert len(counts) == 7
    assert set(counts.values()) == {1}


async def test_stop_policy_sends_nothing_and_exits_1(ksef_simulator_factory: SimFactory, tmp_path: Path) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=10, rate_limits="off")
    factory = InvoiceFactory(NIP, seed=33, size_kb=4)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, data in factory.iter(5):
        (inputs / name).write_bytes(data)
    (inputs / "zz-broken.xml").write_bytes(b"<Faktura>")
    connection = Connection(base_url=sim.base_url, nip=NIP, token=TOKEN)

    def run() -> int:
        return send_batch(
            sorted(inputs.iterdir()), connection, state_dir=tmp_path / "state", console=Console(stderr=True)
        )

    assert await anyio.to_thread.run_sync(run) == 1
    assert not sim.state.sessions or all(s.closed is None for s in sim.state.sessions.values())
    assert not sim.state.invoices
    assert not list((tmp_path / "state").glob("*.aes"))
    assert not list((tmp_path / "state").glob("s*-upload.json"))


async def test_stop_after_a_session_was_opened_leaves_it_unclosed(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    """An invalid invoice after session 1 was opened and uploaded: session 1 is never closed, so nothing is sent."""
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=14, rate_limits="off")
    factory = InvoiceFactory(NIP, seed=34, size_kb=4)
    opened = anyio.Event()

    def on_event(event: BatchEvent) -> None:
        if isinstance(event, PartUploaded):
            opened.set()

    async def invoices() -> AsyncIterator[tuple[str, bytes]]:
        # Valid invoices, slowly, until session 1 is open and uploading; then the bad one.
        for name, data in factory.iter(1000):
            yield name, data
            if opened.is_set():
                break
            await anyio.sleep(0.005)
        yield "zz-broken.xml", b"<Faktura>"

    state = tmp_path / "state"
    async with sender_for(sim, state, fast_config(part_size=10_000), on_event) as sender:
        with pytest.raises(InvoiceError):
            await sender.send(invoices())
    sessions = [s for s in sim.state.sessions.values() if s.kind.value == "Batch"]
    assert sessions, "session 1 was opened before the invalid invoice was read"
    assert all(s.closed is None for s in sessions)
    assert not sim.state.invoices
    assert not list(state.glob("*.aes"))
    assert not list(state.glob("s*-upload.json"))
    assert not (state / "plan.json").exists()


class _HeldUploads:
    """``client.batch`` whose part uploads are held until the spool files are gone (or cancelled), and recorded."""

    def __init__(self, client: KsefClient, state_dir: Path) -> None:
        self._batch = client.batch
        self.state_dir = state_dir
        self.uploading = anyio.Event()
        self.outlived_spool: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    async def upload_part(self, request: PartUploadRequest, body: bytes | BinaryIO, size: int) -> int:
        self.uploading.set()
        # Polls the directory: deletion has no event to wait on.
        while any(self.state_dir.glob("*.aes")):  # noqa: ASYNC110
            await anyio.sleep(0.01)
        self.outlived_spool.append(request.url.split("?", maxsplit=1)[0])
        return 201


class _HeldClient:
    """The client's resources, with `_HeldUploads` as ``batch``."""

    def __init__(self, client: KsefClient, batch: _HeldUploads) -> None:
        self.batch = batch
        self.sessions = client.sessions
        self.security = client.security
        self.limits = client.limits
        self.system_warnings = client.system_warnings


async def test_stop_cancels_uploads_before_the_spool_is_deleted(
    ksef_simulator_factory: SimFactory, tmp_path: Path
) -> None:
    """Prepare deletes the parts of a stopped send only after the uploads reading them have been cancelled."""
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], seed=15, rate_limits="off")
    factory = InvoiceFactory(NIP, seed=35, size_kb=4)
    state = tmp_path / "state"
    async with KsefClient(sim.base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP) as client:
        api = _HeldUploads(client, state)

        async def invoices() -> AsyncIterator[tuple[str, bytes]]:
            # Valid invoices until a part upload of session 1 is in flight; then the bad one.
            for name, data in factory.iter(1000):
                yield name, data
                if api.uploading.is_set():
                    break
                await anyio.sleep(0.005)
            yield "zz-broken.xml", b"<Faktura>"

        sender = BatchSender(
            cast("BatchClient", _HeldClient(client, api)), state, fast_config(part_size=10_000, concurrency=1)
        )
        with anyio.fail_after(30), pytest.raises(InvoiceError):
            await sender.send(invoices())
    assert api.uploading.is_set()
    assert api.outlived_spool == [], "an upload was still running when its spool file was deleted"
    assert not list(state.glob("*.aes"))
    assert all(s.closed is None for s in sim.state.sessions.values())
    assert not sim.state.invoices
