"""Peak memory of the simulator on a large batch (3 parts), beside a naive server that reads each part whole.

Run: ``python benchmarks/bench_simulator_memory.py [--mb 200]``. Builds a Zip of five invoices plus one large
stored member (random bytes, so it does not compress), splits it into 3 parts, encrypts each, then:

* ours: uploads the parts to `KsefSimulator` (streamed to disk while hashing), closes the session and waits for the
  processing (decrypt, join, hash, unzip, validate) to finish;
* baseline: uploads the same parts to a minimal aiohttp handler that does ``await request.read()`` and hashes the
  bytes, i.e. what a server that buffers each part costs.

The resident set size is sampled every 5 ms in a thread; the figure is the peak growth over the value measured just
before the uploads. Temporary files go to the system temp directory (about 3x the batch size on disk).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Self

import aiohttp
from aiohttp import web

from ksef_async.core.crypto import (
    KEY_USAGE_SYMMETRIC,
    KEY_USAGE_TOKEN,
    MfPublicKey,
    SessionKey,
    b64,
    encrypt_ksef_token,
    select_public_key,
)
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator import KsefSimulator

_CHUNK = 1 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE")
_NIP = "5265877635"
_TOKEN = "bench-token"


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1]) * _PAGE


class PeakRss:
    """Samples the resident set size in a thread; ``growth`` is the peak over the value at entry."""

    def __init__(self) -> None:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> Self:
        self.base = self.peak = _rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def build_parts(workdir: Path, key: SessionKey, total: int) -> tuple[int, str, list[tuple[Path, int, str]]]:
    """Write the archive, return its size and hash and the 3 encrypted part files (path, size, hash)."""
    archive = workdir / "batch.zip"
    factory = InvoiceFactory(_NIP, seed=1)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in factory.iter(5):
            zf.writestr(name, data)
        with zf.open("filler.xml", "w", force_zip64=True) as member:
            for offset in range(0, total, _CHUNK):
                member.write(os.urandom(min(_CHUNK, total - offset)))
    size = archive.stat().st_size
    digest = hashlib.sha256()
    parts = []
    part_size = -(-size // 3)
    with archive.open("rb") as src:
        for n in range(3):
            target = workdir / f"part{n + 1}"
            enc, part_digest, left = key.encryptor(), hashlib.sha256(), min(part_size, size - n * part_size)
            with target.open("wb") as dst:
                while left:
                    plain = src.read(min(_CHUNK, left))
                    left -= len(plain)
                    digest.update(plain)
                    block = enc.update(plain)
                    part_digest.update(block)
                    dst.write(block)
                tail = enc.finalize()
                part_digest.update(tail)
                dst.write(tail)
            parts.append((target, target.stat().st_size, b64(part_digest.digest())))
    archive.unlink()
    return size, b64(digest.digest()), parts


async def _json(http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kw) as resp:
        assert resp.status < 300, (resp.status, await resp.text())
        return await resp.json() if resp.content_type.endswith("json") else None


async def run_ours(workdir: Path, mb: int) -> tuple[int, float]:
    async with KsefSimulator(contexts=[(_NIP, _TOKEN)], rate_limits="off") as sim, aiohttp.ClientSession() as http:
        base = sim.base_url
        certs = await _json(http, "GET", f"{base}/security/public-key-certificates")
        keys = [
            MfPublicKey.from_api(
                c["certificate"],
                dt.datetime.fromisoformat(c["validFrom"]),
                dt.datetime.fromisoformat(c["validTo"]),
                c["usage"],
            )
            for c in certs
        ]
        now = sim.clock.now_dt()
        challenge = await _json(http, "POST", f"{base}/auth/challenge")
        token_key = select_public_key(keys, KEY_USAGE_TOKEN, now).rsa_public_key()
        init = await _json(
            http,
            "POST",
            f"{base}/auth/ksef-token",
            json={
                "challenge": challenge["challenge"],
                "contextIdentifier": {"type": "Nip", "value": _NIP},
                "encryptedToken": encrypt_ksef_token(token_key, _TOKEN, challenge["timestampMs"]),
            },
        )
        tokens = await _json(http, "POST", f"{base}/auth/token/redeem", init["authenticationToken"]["token"])
        access = tokens["accessToken"]["token"]
        key = SessionKey.generate()
        size, file_hash, parts = await asyncio.to_thread(build_parts, workdir, key, mb * 1_000_000)
        sym = select_public_key(keys, KEY_USAGE_SYMMETRIC, now).rsa_public_key()
        body = {
            "formCode": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
            "batchFile": {
                "fileSize": size,
                "fileHash": file_hash,
                "fileParts": [
                    {"ordinalNumber": i + 1, "fileSize": s, "fileHash": h} for i, (_, s, h) in enumerate(parts)
                ],
            },
            "encryption": {"encryptedSymmetricKey": b64(key.wrap(sym)), "initializationVector": b64(key.iv)},
        }
        opened = await _json(http, "POST", f"{base}/sessions/batch", access, json=body)
        started = time.perf_counter()
        with PeakRss() as rss:
            for upload, (path, _, _) in zip(opened["partUploadRequests"], parts, strict=True):
                with path.open("rb") as fh:
                    async with http.put(upload["url"], data=fh, headers=upload["headers"]) as resp:
                        assert resp.status == 201, await resp.text()
            await _json(http, "POST", f"{base}/sessions/batch/{opened['referenceNumber']}/close", access)
            await sim.wait_idle()
        status = await _json(http, "GET", f"{base}/sessions/{opened['referenceNumber']}", access)
        assert status["status"]["code"] == 200, status
        return rss.growth, time.perf_counter() - started


def _part_files(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("part*"))


async def run_baseline(workdir: Path) -> int:
    async def buffered(request: web.Request) -> web.Response:
        data = await request.read()  # the whole part in memory
        hashlib.sha256(data).digest()
        return web.Response(status=201)

    app = web.Application(client_max_size=200_000_000)
    app.router.add_put("/part/{n}", buffered)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    try:
        async with aiohttp.ClientSession() as http:
            with PeakRss() as rss:
                for n, path in enumerate(_part_files(workdir), 1):
                    with path.open("rb") as fh:
                        async with http.put(f"http://127.0.0.1:{port}/part/{n}", data=fh) as resp:
                            assert resp.status == 201
            return rss.growth
    finally:
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the large archive member in MB (1 MB = 10^6 B)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        workdir = Path(tmp)
        ours, seconds = await run_ours(workdir, args.mb)
        # The simulator deleted nothing of ours: the encrypted parts are still in workdir for the baseline.
        baseline = await run_baseline(workdir)
        part = max(p.stat().st_size for p in _part_files(workdir))
    sys.stdout.write(
        f"batch of {args.mb} MB in 3 parts (largest part {part / 1e6:.1f} MB); peak RSS growth, upload+processing\n"
        f"{'server':<40}{'peak RSS growth':>18}\n"
        f"{'simulator (streamed, incl. processing)':<40}{ours / 1e6:>15.1f} MB\n"
        f"{'baseline: request.read() per part':<40}{baseline / 1e6:>15.1f} MB\n"
        f"simulator upload+processing time: {seconds:.1f} s ({args.mb / seconds:.0f} MB/s)\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
