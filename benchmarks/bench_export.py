"""Benchmark: download, verify, decrypt, join and unpack a ~500 MB export package from the simulator.

Three processes, so each peak RSS is its own: the simulator (seeded with 10,000 invoices of ~50 kB, packed with
deflate level 0 so that the package really is ~500 MB without the simulator holding gigabytes of XML), then each
client variant in a fresh process:

* ``streaming``: `ksef_async.retrieval.export_invoices` (parts streamed and decrypted chunk by chunk to a spool,
  hashes checked, the zip read from the spooled parts, each invoice hashed against its metadata);
* ``naive`` (baseline): each part read whole into memory, decrypted in one call, parts joined in memory, zip opened
  from a ``BytesIO``: what most clients do.

Both variants are timed from the moment the export's status is 200 (the package is ready on the server), so the
figure is the client's download-verify-decrypt-join-unpack rate, not the simulator's packing speed.

Run: ``python benchmarks/bench_export.py [--invoices 10000] [--size-kb 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

NIP = "5265877635"
TOKEN = "20250101-EC-0000000000-0000000000-00|nip-5265877635|" + "0" * 64


async def serve(ready: Path, count: int, size_kb: float) -> None:
    from ksef_async.core.ratelimit import WindowLimits  # noqa: PLC0415
    from ksef_async.operations import RATE_LIMIT_GROUPS  # noqa: PLC0415
    from ksef_async.testing.simulator import KsefSimulator  # noqa: PLC0415
    from ksef_async.testing.simulator import retrieval as simret  # noqa: PLC0415

    async with KsefSimulator([(NIP, TOKEN)], seed=3) as sim:
        sim.rate_limiter.set_limits(dict.fromkeys(RATE_LIMIT_GROUPS, WindowLimits(1_000, 100_000, 1_000_000)))
        cfg = simret.settings(sim)
        cfg.zip_level = 0
        cfg.export_delay = 0.0
        now = sim.clock.now_dt()
        simret.seed_invoices(sim, NIP, count, now - dt.timedelta(days=20), now - dt.timedelta(days=1), size_kb=size_kb)
        info = {"base_url": sim.base_url, "since": (now - dt.timedelta(days=21)).isoformat()}
        await asyncio.to_thread(ready.write_text, json.dumps(info))
        await asyncio.Event().wait()


async def client_run(base_url: str, since: str, variant: str) -> dict[str, Any]:
    from ksef_async.auth import KsefTokenCredentials  # noqa: PLC0415
    from ksef_async.client import KsefClient  # noqa: PLC0415
    from ksef_async.core.crypto import SessionKey, decrypt_cbc, sha256_b64  # noqa: PLC0415
    from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters  # noqa: PLC0415
    from ksef_async.retrieval.export import download_package  # noqa: PLC0415

    filters = InvoiceQueryFilters(
        subject_type="Subject2",
        date_range=InvoiceQueryDateRange(date_type="PermanentStorage", from_=dt.datetime.fromisoformat(since)),
    )
    invoices = xml_bytes = 0
    async with KsefClient(base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP) as client:
        await client.login()
        if variant == "streaming":
            key = SessionKey.generate()
            reference = await client.retrieval.start_export(filters, key)
            status = await client.retrieval.wait_for_export(reference)
            assert status.package is not None
            with tempfile.TemporaryDirectory() as spool:
                started = time.perf_counter()  # from status 200, like the baseline: the package is ready
                package = await download_package(client.retrieval, reference, status, key, workdir=Path(spool))
                ready = time.perf_counter()
                async for inv in package.invoices():
                    invoices += 1
                    xml_bytes += len(inv.xml or b"")
                package.close()
                size = package.package.size
                parts = len(package.package.parts)
        else:
            key = SessionKey.generate()
            reference = await client.retrieval.start_export(filters, key)
            status = await client.retrieval.wait_for_export(reference)
            assert status.package is not None
            started = time.perf_counter()
            chunks = [
                decrypt_cbc(key, await client._storage_download(part.url))  # type: ignore[attr-defined]  # noqa: SLF001
                for part in sorted(status.package.parts, key=lambda p: p.ordinal_number)
            ]
            archive = b"".join(chunks)
            del chunks
            ready = time.perf_counter()
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                meta = json.loads(zf.read("_metadata.json"))["invoices"]
                for entry in meta:
                    xml = zf.read(f"{entry['ksefNumber']}.xml")
                    assert sha256_b64(xml) == entry["invoiceHash"]
                    invoices += 1
                    xml_bytes += len(xml)
            size = status.package.size
            parts = len(status.package.parts)
        done = time.perf_counter()
    return {
        "variant": variant,
        "package_bytes": size,
        "parts": parts,
        "invoices": invoices,
        "xml_bytes": xml_bytes,
        "seconds": round(done - started, 2),
        "download_decrypt_seconds": round(ready - started, 2),
        "unpack_seconds": round(done - ready, 2),
        "mb_per_s": round(size / 1e6 / (done - started), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_variant(info: dict[str, Any], variant: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", variant, "--base-url", info["base_url"], "--since", info["since"]],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--size-kb", type=float, default=50.0)
    parser.add_argument("--serve", type=Path)
    parser.add_argument("--client")
    parser.add_argument("--base-url")
    parser.add_argument("--since")
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.invoices, args.size_kb))
        return
    if args.client is not None:
        if args.client == "naive":
            _patch_naive_download()
        print(json.dumps(asyncio.run(client_run(args.base_url, args.since, args.client))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(ready),
                "--invoices",
                str(args.invoices),
                "--size-kb",
                str(args.size_kb),
            ]
        )
        try:
            while not ready.exists():
                if server.poll() is not None:
                    raise SystemExit("the simulator process died")
                time.sleep(0.2)
            info = json.loads(ready.read_text())
            rows = [run_variant(info, "streaming"), run_variant(info, "naive")]
        finally:
            server.kill()
            server.wait()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, nproc={os.cpu_count()}, Python {platform.python_version()}")
    head = ("variant", "package MB", "parts", "invoices", "s", "MB/s", "peak RSS MB")
    print(f"{head[0]:<10} {head[1]:>10} {head[2]:>5} {head[3]:>8} {head[4]:>7} {head[5]:>7} {head[6]:>11}")
    for r in rows:
        print(
            f"{r['variant']:<10} {r['package_bytes'] / 1e6:>10.1f} {r['parts']:>5} {r['invoices']:>8} "
            f"{r['seconds']:>7.2f} {r['mb_per_s']:>7.1f} {r['peak_rss_mb']:>11.1f}"
        )
    stream = rows[0]
    verdict = "met" if stream["peak_rss_mb"] <= 150 else "NOT met"
    print(f"streaming peak RSS {stream['peak_rss_mb']} MB, target <= 150 MB: {verdict}")


def _patch_naive_download() -> None:
    # The baseline reads each part whole, the way StorageTransport.download does.
    from ksef_async.client import KsefClient  # noqa: PLC0415

    async def download(self: Any, url: str) -> bytes:
        return await self.retrieval._storage.download(url)  # type: ignore[no-any-return]  # noqa: SLF001

    KsefClient._storage_download = download  # type: ignore[attr-defined]  # noqa: SLF001


if __name__ == "__main__":
    main()
