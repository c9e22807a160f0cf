"""Server-supplied names never leave their directory; files with counterparty data are owner-only."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ksef_async.cli.send import write_upo_pages
from ksef_async.client import KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError, ProtocolError
from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters
from ksef_async.online import OnlineSendResult, SessionOutcome
from ksef_async.retrieval.export import export_invoices
from ksef_async.retrieval.sync import CHECKPOINT_FILE, INDEX_FILE, InvoiceDirectory, sync_invoices
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret

from .conftest import NIP, TOKEN
from .server import HostileServer, plant_ksef_number

DAY = dt.timedelta(days=1)
FAST_POLL = Backoff(initial=0.05, factor=1.5, maximum=0.5)


def seed(sim: KsefSimulator, count: int = 5) -> dt.datetime:
    now = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, count, now - 20 * DAY, now - 2 * DAY)
    return now - 30 * DAY


def everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["Zip", "TarGz"])
@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
async def test_sync_refuses_a_ksef_number_that_is_a_path_and_writes_nothing(
    sim: KsefSimulator, client: KsefClient, tmp_path: Path, compression: str, kind: str
) -> None:
    since = seed(sim)
    outside = tmp_path / "outside"
    hostile_name = "../outside/evil" if kind == "dotdot" else str(outside / "evil")
    plant_ksef_number(sim, hostile_name)
    outdir = tmp_path / "out"
    (tmp_path / "outside").mkdir()
    with pytest.raises(ProtocolError, match="is not a KSeF number") as caught:
        await sync_invoices(
            client.retrieval, outdir, since=since, compression=compression, backoff=FAST_POLL, fsync=False
        )
    assert "evil" in str(caught.value)
    assert list(outside.iterdir()) == []
    assert list(outdir.glob("*.xml")) == []
    assert not (outdir / INDEX_FILE).exists()
    assert not (outdir / CHECKPOINT_FILE).exists()


@pytest.mark.anyio
async def test_export_write_to_refuses_a_traversal_name(sim: KsefSimulator, client: KsefClient, tmp_path: Path) -> None:
    since = seed(sim)
    plant_ksef_number(sim, "../evil")
    filters = InvoiceQueryFilters(
        subject_type="Subject2",
        date_range=InvoiceQueryDateRange(date_type="PermanentStorage", from_=since, to=sim.clock.now_dt()),
    )
    async with export_invoices(client.retrieval, filters, backoff=FAST_POLL) as package:
        with pytest.raises(ProtocolError, match="not a KSeF number"):
            await package.write_to(tmp_path / "out")
    assert not (tmp_path / "evil.xml").exists()
    assert list((tmp_path / "out").glob("*.xml")) == []


def test_upo_pages_refuse_a_reference_number_that_is_a_path(tmp_path: Path) -> None:
    session = SessionOutcome(
        reference_number="../../escaped", form_code="FA (3)", status_code=200, description="ok", upo=(b"<UPO/>",)
    )
    with pytest.raises(ProtocolError, match="not a reference number"):
        write_upo_pages(OnlineSendResult((), (session,)), tmp_path / "upo")
    assert everything_under(tmp_path) <= {tmp_path / "upo"}


def test_upo_pages_are_owner_only(tmp_path: Path) -> None:
    reference = "20251010-SO-0123456789-ABCDEF0123-01"
    session = SessionOutcome(
        reference_number=reference, form_code="FA (3)", status_code=200, description="ok", upo=(b"<UPO/>",)
    )
    [path] = write_upo_pages(OnlineSendResult((), (session,)), tmp_path / "upo")
    assert path.name == f"{reference}-1.xml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "upo").stat().st_mode) == 0o700


@pytest.mark.anyio
async def test_synced_files_are_owner_only(sim: KsefSimulator, client: KsefClient, tmp_path: Path) -> None:
    since = seed(sim)
    outdir = tmp_path / "out"
    report = await sync_invoices(client.retrieval, outdir, since=since, backoff=FAST_POLL, fsync=False)
    assert report.invoices_written == 5
    assert stat.S_IMODE(outdir.stat().st_mode) == 0o700
    files = [*outdir.glob("*.xml"), outdir / INDEX_FILE, outdir / CHECKPOINT_FILE]
    assert len(files) == 7
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_corrupted_index_line_is_reported_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / INDEX_FILE).write_text('{"ksefNumber": "x"}\nnot json at all\n', "utf-8")
    with pytest.raises(ConfigurationError, match=r"index.jsonl: line 2 is not an index entry"):
        InvoiceDirectory(tmp_path)


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | env
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ksef_async.cli", *args, env=full_env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.anyio
async def test_cli_sync_refuses_a_traversal_name_and_reports_it(
    sim: KsefSimulator, hostile: HostileServer, tmp_path: Path
) -> None:
    since = seed(sim)
    plant_ksef_number(sim, "../evil")
    code, _, err = await _cli(
        "sync", str(tmp_path / "out"), "--since", since.date().isoformat(), "--base-url", hostile.base_url,
        "--nip", NIP, env={"KSEF_TOKEN": TOKEN},
    )  # fmt: skip
    assert code != 0
    assert "ProtocolError: export" in err, err
    assert "'../evil' is not a KSeF number" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "evil.xml").exists()
    assert list((tmp_path / "out").glob("*.xml")) == []


@pytest.mark.anyio
async def test_cli_sync_summary_and_files_are_owner_only(
    sim: KsefSimulator, hostile: HostileServer, tmp_path: Path
) -> None:
    since = seed(sim)
    out = tmp_path / "out"
    code, _, err = await _cli(
        "sync", str(out), "--since", since.date().isoformat(), "--base-url", hostile.base_url, "--nip", NIP,
        env={"KSEF_TOKEN": TOKEN},
    )  # fmt: skip
    assert code == 0, err
    summary = out / "sync-summary.json"
    assert json.loads(summary.read_text("utf-8"))["invoicesWritten"] == 5
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600
    assert not list(out.glob(".*.tmp"))
