"""Exports end to end against the simulator: own key, polling, verified parallel part downloads, Zip and TarGz."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from ksef_async.client import KsefClient
from ksef_async.errors import BadRequestError, DeadlineExceededError, ExportFailedError, IntegrityError
from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters
from ksef_async.retrieval.download import download_invoice
from ksef_async.retrieval.export import export_invoices
from ksef_async.testing.simulator import KsefSimulator, retrieval_store
from ksef_async.testing.simulator import retrieval as simret

from .conftest import NIP

pytestmark = pytest.mark.anyio

DAY = dt.timedelta(days=1)


def stored_since(start: dt.datetime, *, restrict: bool = True) -> InvoiceQueryFilters:
    return InvoiceQueryFilters(
        subject_type="Subject2",
        date_range=InvoiceQueryDateRange(
            date_type="PermanentStorage", from_=start, restrict_to_permanent_storage_hwm_date=restrict
        ),
    )


@pytest.mark.parametrize("compression", ["Zip", "TarGz"])
async def test_export_yields_every_invoice_with_its_metadata(
    sim: KsefSimulator, client: KsefClient, compression: str, tmp_path: Path
) -> None:
    cfg = simret.settings(sim)
    cfg.max_part_size = 3_000  # many parts, downloaded concurrently
    cfg.max_package_invoices = 25
    now = sim.clock.now_dt()
    numbers = simret.seed_invoices(sim, NIP, 40, now - 10 * DAY, now - DAY)
    async with export_invoices(
        client.retrieval, stored_since(now - 20 * DAY), compression=compression, workdir=tmp_path, concurrency=3
    ) as package:
        assert len(package.package.parts) > 3
        assert package.package.is_truncated is True
        got = [inv async for inv in package.invoices()]
        spools = list(os.scandir(tmp_path))
        assert [e.is_dir() for e in spools] == [True]
    assert not list(os.scandir(tmp_path))  # the spool is removed with the block
    assert [inv.ksef_number for inv in got] == numbers[:25]
    for inv in got:
        assert inv.xml == sim.state.invoices[inv.ksef_number].content
        assert inv.metadata.ksef_number == inv.ksef_number
        assert inv.raw_metadata["ksefNumber"] == inv.ksef_number
    last = package.package.last_permanent_storage_date
    assert last is not None
    assert abs(last - sim.state.invoices[numbers[24]].permanent_storage_date) < dt.timedelta(milliseconds=1)


async def test_only_metadata_and_write_to(sim: KsefSimulator, client: KsefClient, tmp_path: Path) -> None:
    now = sim.clock.now_dt()
    numbers = simret.seed_invoices(sim, NIP, 8, now - 5 * DAY, now - DAY)
    async with export_invoices(client.retrieval, stored_since(now - 6 * DAY), only_metadata=True) as package:
        got = [inv async for inv in package.invoices()]
    assert [inv.ksef_number for inv in got] == numbers
    assert all(inv.xml is None for inv in got)
    async with export_invoices(client.retrieval, stored_since(now - 6 * DAY)) as package:
        count = await package.write_to(tmp_path / "out")
    assert count == 8
    for number in numbers:
        assert (tmp_path / "out" / f"{number}.xml").read_bytes() == sim.state.invoices[number].content
    listed = json.loads((tmp_path / "out" / "_metadata.json").read_text("utf-8"))["invoices"]
    assert [m["ksefNumber"] for m in listed] == numbers


async def test_a_corrupted_part_is_refused(sim: KsefSimulator, client: KsefClient) -> None:
    now = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, 5, now - 5 * DAY, now - DAY)
    original = client.retrieval.wait_for_export

    async def corrupt_then_return(reference: str, **kwargs: object) -> object:
        status = await original(reference, **kwargs)  # type: ignore[arg-type]
        job = retrieval_store._store(sim.runtime).exports[reference]
        path, _ = job.part_paths[1]
        data = bytearray(path.read_bytes())
        data[40] ^= 0xFF  # one flipped bit in the ciphertext on the storage side
        path.write_bytes(bytes(data))
        return status

    client.retrieval.wait_for_export = corrupt_then_return  # type: ignore[method-assign,assignment]
    with pytest.raises(IntegrityError, match="encryptedPartHash"):
        async with export_invoices(client.retrieval, stored_since(now - 6 * DAY)):
            pass


async def test_failed_export_is_a_typed_error(sim: KsefSimulator, client: KsefClient) -> None:
    now = sim.clock.now_dt()
    with pytest.raises(ExportFailedError) as caught:
        async with export_invoices(client.retrieval, stored_since(now + DAY)):
            pass
    assert caught.value.code == 420
    assert caught.value.reference_number is not None
    assert "-EH-" in caught.value.reference_number


async def test_single_download_checks_the_hash_and_retries_not_yet_available(
    sim: KsefSimulator, client: KsefClient
) -> None:
    now = sim.clock.now_dt()
    old, fresh = simret.seed_invoices(sim, NIP, 2, now - DAY, now - dt.timedelta(seconds=10))
    assert await download_invoice(client.retrieval, old) == sim.state.invoices[old].content
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # simulated time passes instead of real time
        waits.append(seconds)
        sim.clock.advance(300)

    xml = await download_invoice(client.retrieval, fresh, sleep=sleep)
    assert xml == sim.state.invoices[fresh].content
    assert len(waits) == 2  # stored 600 s after acceptance: two 300-s waits
    with pytest.raises(BadRequestError) as caught:
        await download_invoice(client.retrieval, old[:-13] + "0000000000-00", sleep=sleep)
    assert caught.value.has_code(21164) or caught.value.has_code(21405)
    (later,) = simret.seed_invoices(
        sim, NIP, 1, sim.clock.now_dt() - dt.timedelta(seconds=5), sim.clock.now_dt(), seed=3
    )

    async def no_time(seconds: float) -> None:
        waits.append(seconds)

    with pytest.raises(DeadlineExceededError):
        await download_invoice(client.retrieval, later, max_wait=0.05, sleep=no_time)
    inv = sim.state.invoices[old]
    inv.content = inv.content.replace(b"<P_2>", b"<P_2>X", 1)  # served bytes no longer match x-ms-meta-hash
    with pytest.raises(IntegrityError, match="x-ms-meta-hash"):
        await download_invoice(client.retrieval, old)
