"""Input MB/s of the batch pipeline (zip + split + encrypt + hash) on one core, beside two baselines, in one run.

Run: ``python benchmarks/bench_pipeline.py`` (about a minute; ``--count`` and ``--repeat`` to change; ``--xsd``
adds wall-clock rows of the whole `prepare` with XSD validation on all cores: 1 thread, N threads, N processes). The
process pins itself to one CPU, generates ``--count`` distinct ~13 kB FA(3) invoices with `InvoiceFactory` up
front (not timed), and times each row ``--repeat`` times; the best round is kept. Throughput is input XML bytes
(SI MB) per CPU-second of this process (robust when other processes share the machine) and per wall-second.

Rows:

- ``ours: pipeline, isal L1`` / ``ours: pipeline, zlib L1``: `ZipWriter` -> `ArchivePipeline` with the default
  99,999,984-byte parts: deflate, CRC-32, split, AES-256-CBC per part with ``update_into`` into reused buffers,
  SHA-256 of every part and of the whole archive; the ciphertext goes to a sink that drops it (the baselines keep
  theirs in memory, which costs them more).
- ``ours: prepare_batch_sync (no XSD)``: the whole `prepare` minus XSD validation: root-tag form detection,
  SHA-256 per invoice, duplicate checks, session packing, the pipeline, and the ciphertext written to spool
  files plus the plan (a temporary directory, deleted afterwards).
- ``baseline: stdlib in memory``: what other Python clients do: ``zipfile`` with ``ZIP_DEFLATED`` into a
  ``BytesIO``, split the bytes, one-shot ``PKCS7`` padder + AES-CBC per part, SHA-256 of the zip and the parts.
- ``baseline: ksef-client 0.20.0``: that package's own ``ksef_client.utils.zip_utils.build_zip(files)`` and
  ``ksef_client.services.batch.encrypt_batch_parts(zip, key, iv)`` (split, encrypt, and the ``BatchFileInfo``
  with the hashes).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from _machine import describe, pin_to_one_core, unpin
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from isal import isal_zlib
from ksef_client.services.batch import encrypt_batch_parts
from ksef_client.utils.zip_utils import build_zip

from ksef_async.batch import prepare_batch_sync
from ksef_async.core.crypto import SessionKey
from ksef_async.core.pipeline import MAX_PART_PLAIN_SIZE, ArchivePipeline, PartInfo
from ksef_async.core.zipstream import ZipWriter
from ksef_async.testing.invoices import InvoiceFactory


class NullSink:
    def write_part(self, ordinal: int, data: memoryview) -> None:
        pass

    def end_part(self, part: PartInfo) -> None:
        pass


def ours(files: list[tuple[str, bytes]], backend: object) -> int:
    pipeline = ArchivePipeline(SessionKey.generate(), NullSink())
    writer = ZipWriter(pipeline.write, backend=backend)  # type: ignore[arg-type]
    for name, data in files:
        writer.add(name, data)
    writer.close()
    return pipeline.finish().file_size


def ours_prepare(files: list[tuple[str, bytes]], key: rsa.RSAPublicKey) -> int:
    state = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        plan = prepare_batch_sync(files, public_key=key, state_dir=state / "s", validate=False)
        return sum(s.file_size or 0 for s in plan.sessions)
    finally:
        shutil.rmtree(state)


def stdlib_baseline(files: list[tuple[str, bytes]]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    archive = buffer.getvalue()
    key = SessionKey.generate()
    file_hash = hashlib.sha256(archive).digest()
    parts = []
    for start in range(0, len(archive), MAX_PART_PLAIN_SIZE):
        padder = padding.PKCS7(128).padder()
        padded = padder.update(archive[start : start + MAX_PART_PLAIN_SIZE]) + padder.finalize()
        enc = Cipher(algorithms.AES(key.key), modes.CBC(key.iv)).encryptor()
        cipher = enc.update(padded) + enc.finalize()
        parts.append((cipher, hashlib.sha256(cipher).digest()))
    assert file_hash
    return len(archive)


def ksef_client_baseline(files: list[tuple[str, bytes]]) -> int:
    archive = build_zip(dict(files))
    key = SessionKey.generate()
    _parts, info = encrypt_batch_parts(archive, key.key, key.iv)
    assert info.file_size == len(archive)
    return len(archive)


def ours_prepare_xsd(files: list[tuple[str, bytes]], key: rsa.RSAPublicKey, workers: int, executor: str) -> int:
    state = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        plan = prepare_batch_sync(
            files,
            public_key=key,
            state_dir=state / "s",
            workers=workers,
            executor=executor,  # type: ignore[arg-type]
        )
        return sum(s.file_size or 0 for s in plan.sessions)
    finally:
        shutil.rmtree(state)


def measure(fn: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    best_cpu = best_wall = float("inf")
    size = 0
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        size = fn()
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size-kb", type=float, default=13)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--xsd", action="store_true", help="also time prepare with XSD validation on all cores")
    args = parser.parse_args()
    all_cpus = pin_to_one_core()
    print(f"machine: {describe()}")
    files = list(InvoiceFactory("5265877635", seed=1, size_kb=args.size_kb).iter(args.count))
    total = sum(len(d) for _, d in files)
    print(f"input: {len(files):,} invoices, {total:,} bytes ({total / len(files):,.0f} B each)")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rows: list[tuple[str, Callable[[], int]]] = [
        ("ours: pipeline, isal L1", lambda: ours(files, isal_zlib)),
        ("ours: pipeline, zlib L1", lambda: ours(files, zlib)),
        ("ours: prepare_batch_sync (no XSD)", lambda: ours_prepare(files, rsa_key)),
        ("baseline: stdlib in memory (zlib L6)", lambda: stdlib_baseline(files)),
        ("baseline: ksef-client 0.20.0", lambda: ksef_client_baseline(files)),
    ]
    results: dict[str, float] = {}
    print(f"{'row':40} {'MB/s (CPU)':>11} {'MB/s (wall)':>12} {'zip bytes':>13}")
    for label, fn in rows:
        cpu, wall, size = measure(fn, args.repeat)
        results[label] = total / 1e6 / cpu
        print(f"{label:40} {total / 1e6 / cpu:11.1f} {total / 1e6 / wall:12.1f} {size:13,}")
        sys.stdout.flush()
    best = results["ours: pipeline, isal L1"]
    for base in ("baseline: stdlib in memory (zlib L6)", "baseline: ksef-client 0.20.0"):
        print(f"ours (isal) vs {base.removeprefix('baseline: ')}: {best / results[base]:.1f}x")
    if args.xsd:
        unpin(all_cpus)
        n = len(all_cpus) or os.cpu_count() or 1
        print(f"prepare with XSD validation on {n} CPU(s), wall clock, one round each:")
        for label, workers, executor in [
            ("1 thread", 1, "thread"),
            (f"{n} threads", n, "thread"),
            (f"{n} processes (spawn)", n, "process"),
        ]:
            _cpu, wall, _size = measure(functools.partial(ours_prepare_xsd, files, rsa_key, workers, executor), 1)
            print(f"  ours: prepare_batch_sync, XSD, {label:22} {total / 1e6 / wall:8.1f} MB/s (wall)")
            sys.stdout.flush()
    prepared = results["ours: prepare_batch_sync (no XSD)"]
    print(f"ours prepare (no XSD) vs ksef-client 0.20.0: {prepared / results['baseline: ksef-client 0.20.0']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
