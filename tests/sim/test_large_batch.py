"""Acceptance: a 200 MB batch (3 parts) is uploaded and processed while the process holds far less than a part."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Self

import pytest

from ksef_async.core.crypto import SessionKey, b64

from .conftest import FA3, Api, invoice

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

_TOTAL = 200_000_000
_CHUNK = 1 << 20
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1]) * _PAGE


class _PeakRss:
    """Samples the resident set size every few milliseconds in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _write_archive(path: Path) -> None:
    """Five invoices and one ~200 MB stored member (rejected by its size, so it is hashed but never kept)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for i in range(5):
            archive.writestr(f"inv-{i}.xml", invoice(f"FA/BIG/{i}"))
        with archive.open("filler.xml", "w", force_zip64=True) as member:
            written = 0
            while written < _TOTAL:
                member.write(os.urandom(min(_CHUNK, _TOTAL - written)))
                written += _CHUNK


def _split_encrypt(key: SessionKey, archive: Path, out_dir: Path, parts: int) -> list[tuple[Path, int, str]]:
    size = archive.stat().st_size
    part_size = -(-size // parts)
    result = []
    with archive.open("rb") as src:
        for n in range(parts):
            target = out_dir / f"part{n + 1}.aes"
            enc = key.encryptor()
            digest = hashlib.sha256()
            left = min(part_size, size - n * part_size)
            with target.open("wb") as dst:
                while left:
                    block = enc.update(src.read(min(_CHUNK, left)))
                    left -= min(_CHUNK, left)
                    digest.update(block)
                    dst.write(block)
                tail = enc.finalize()
                digest.update(tail)
                dst.write(tail)
            result.append((target, target.stat().st_size, b64(digest.digest())))
    return result


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return b64(digest.digest())


async def test_200_mb_batch_streams(api: Api, tmp_path: Path) -> None:
    await api.login()
    key = SessionKey.generate()
    archive = tmp_path / "batch.zip"
    _write_archive(archive)
    parts = _split_encrypt(key, archive, tmp_path, 3)
    body = {
        "formCode": FA3,
        "batchFile": {
            "fileSize": archive.stat().st_size,
            "fileHash": _file_hash(archive),
            "fileParts": [{"ordinalNumber": i + 1, "fileSize": s, "fileHash": h} for i, (_, s, h) in enumerate(parts)],
        },
        "encryption": await api.encryption(key),
    }
    archive.unlink()
    status, opened, _ = await api.call("POST", "/sessions/batch", json=body)
    assert status == 201, opened
    largest_part = max(s for _, s, _ in parts)
    baseline = _rss()
    started = time.monotonic()
    with _PeakRss() as rss:
        for upload, (path, _, _) in zip(opened["partUploadRequests"], parts, strict=True):
            with path.open("rb") as fh:
                async with api.http.put(upload["url"], data=fh, headers=upload["headers"]) as resp:
                    assert resp.status == 201, await resp.text()
            path.unlink()
        status, _, _ = await api.call("POST", f"/sessions/batch/{opened['referenceNumber']}/close")
        assert status == 204
        final = await api.wait_session(opened["referenceNumber"])
    elapsed = time.monotonic() - started
    assert final["status"]["code"] == 200, final
    assert (final["successfulInvoiceCount"], final["failedInvoiceCount"]) == (5, 1)
    growth = rss.peak - baseline
    sys.stdout.write(
        f"200 MB batch: {elapsed:.1f} s, peak RSS growth {growth / 1e6:.1f} MB"
        f" (one part = {largest_part / 1e6:.1f} MB)\n"
    )
    assert growth < largest_part / 2, f"peak RSS grew by {growth:,} B; a part is {largest_part:,} B"
