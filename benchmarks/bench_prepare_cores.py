"""`prepare` on every core: wall time, CPU (user+sys) / wall and peak RSS beside naive baselines, in one run.

Run: ``python benchmarks/bench_prepare_cores.py --mode validate`` (10,000 ~13 kB `InvoiceFactory` FA(3) invoices,
XSD validation on) or ``--mode compress`` (10,000 ~100 kB invoices, 1 GB, ``--no-validate``); ``--rounds`` (default
5) interleaves the rows round by round and the median wall time is kept; ``paired`` is the median of the per-round
ratios (the baseline and the row measured side by side in the same round). The invoices are written once to files in
a temporary directory (page-cached, deleted afterwards); every row reads them from there, as ``ksef-async prepare
DIR`` does, in a fresh subprocess, so rows share neither heap nor warm caches. Each child reports its wall time, its
CPU time (user + sys of itself and of its reaped children, from ``getrusage``) and its peak RSS (``VmHWM``; for the
process pool the largest child's ``ru_maxrss`` is printed too).

Rows, ``--mode validate``:

- ``baseline: naive lxml per file``: what a straightforward client does: for each file ``etree.parse(path)`` and
  ``XMLSchema.assertValid`` (schema compiled once, before timing), then ``zipfile`` (``ZIP_DEFLATED``, zlib level
  6) into a ``BytesIO``, split into 99,999,984-byte parts, one-shot PKCS#7 + AES-256-CBC per part, SHA-256 of the
  zip and of every part. One core.
- ``ours: 1 worker``: `prepare_batch_sync(DIR, workers=1)`: every stage in the calling thread.
- ``ours: N threads`` / ``ours: N processes``: ``workers=N`` with ``executor="thread"`` / ``"process"``; processes
  are the default when validating (``executor="auto"``): `ksef_async.batch._procs` workers.

Rows, ``--mode compress`` (``validate=False``):

- ``baseline: stdlib in memory``: read every file into a ``dict``, then the zip/split/encrypt/hash above.
- ``ours: 1 worker`` / ``ours: N threads``: as above, without validation.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _machine import describe

SELLER = "5265877635"


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _zip_encrypt_in_memory(files: dict[str, bytes]) -> int:
    from cryptography.hazmat.primitives import padding  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: PLC0415

    from ksef_async.core.crypto import SessionKey, sha256_b64  # noqa: PLC0415
    from ksef_async.core.pipeline import MAX_PART_PLAIN_SIZE  # noqa: PLC0415

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    archive = buffer.getvalue()
    key = SessionKey.generate()
    parts = []
    for start in range(0, len(archive), MAX_PART_PLAIN_SIZE):
        padder = padding.PKCS7(128).padder()
        padded = padder.update(archive[start : start + MAX_PART_PLAIN_SIZE]) + padder.finalize()
        enc = Cipher(algorithms.AES(key.key), modes.CBC(key.iv)).encryptor()
        parts.append(enc.update(padded) + enc.finalize())
    assert [sha256_b64(archive), *(sha256_b64(p) for p in parts)]
    return len(archive)


def child(row: str, directory: Path, workers: int) -> dict[str, float]:
    """Run one row over the files in ``directory``; return its figures."""
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415
    from lxml import etree  # noqa: PLC0415

    from ksef_async.batch import prepare_batch_sync  # noqa: PLC0415
    from ksef_async.xml.forms import FA3  # noqa: PLC0415
    from ksef_async.xml.validation import compile_schema  # noqa: PLC0415

    paths = sorted(directory.iterdir())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    schema = compile_schema(FA3) if row == "naive" else None
    state = Path(tempfile.mkdtemp(prefix="bench-cores-"))
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    try:
        if row == "naive":
            assert schema is not None
            files: dict[str, bytes] = {}
            for path in paths:
                schema.assertValid(etree.parse(str(path)))
                files[path.name] = path.read_bytes()
            zip_bytes = _zip_encrypt_in_memory(files)
        elif row == "stdlib":
            zip_bytes = _zip_encrypt_in_memory({p.name: p.read_bytes() for p in paths})
        else:
            validate, executor = {
                "ours-validate-thread": (True, "thread"),
                "ours-validate-process": (True, "process"),
                "ours-compress-thread": (False, "thread"),
            }[row]
            plan = prepare_batch_sync(
                str(directory),
                public_key=key,
                state_dir=state / "s",
                validate=validate,
                workers=workers,
                executor=executor,  # type: ignore[arg-type]
            )
            zip_bytes = sum(s.file_size or 0 for s in plan.sessions)
        wall, cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    finally:
        shutil.rmtree(state)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall": wall, "cpu": cpu, "rss": _peak_rss_mb(), "child_rss": children, "zip": zip_bytes}


def _run(row: str, directory: Path, workers: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", row, "--dir", str(directory), "--workers", str(workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["validate", "compress"], default="validate")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size-kb", type=float, help="invoice size (default: 13 validate, 100 compress)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.dir), args.workers)))
        return 0

    from ksef_async.testing.invoices import write_invoices  # noqa: PLC0415

    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))  # the finally removes the files
    n = args.workers
    size_kb = args.size_kb or (13 if args.mode == "validate" else 100)
    if args.mode == "validate":
        rows = [
            ("baseline: naive lxml per file", "naive", 1),
            ("ours: 1 worker", "ours-validate-thread", 1),
            (f"ours: {n} threads", "ours-validate-thread", n),
            (f"ours: {n} processes", "ours-validate-process", n),
        ]
    else:
        rows = [
            ("baseline: stdlib in memory", "stdlib", 1),
            ("ours: 1 worker", "ours-compress-thread", 1),
            (f"ours: {n} threads", "ours-compress-thread", n),
        ]
    print(f"machine: {describe()}")
    top = Path(tempfile.mkdtemp(prefix="bench-cores-in-"))
    try:
        paths = write_invoices(top / "in", args.count, SELLER, size_kb, seed=7)
        total = sum(p.stat().st_size for p in paths)
        print(f"input: {len(paths):,} files, {total:,} bytes ({total / len(paths):,.0f} B each), mode {args.mode}")
        results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in rows}
        for r in range(args.rounds):
            print(f"round {r + 1}: load average {os.getloadavg()[0]:.2f}", flush=True)
            for label, row, workers in rows:
                results[label].append(_run(row, top / "in", workers))
        print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        head = (
            f"{'row':32} {'wall s':>7} {'MB/s':>7} {'inv/s':>7} {'CPU/wall':>8} {'RSS MB':>7} {'vs base':>7}"
            f" {'paired':>7}"
        )
        print(f"median of {args.rounds} rounds (wall); CPU = user+sys of the process and its children")
        print("vs base: the baseline's median wall / the row's; paired: the median of the per-round ratios")
        print(head)
        base_runs = results[rows[0][0]]
        base = statistics.median(x["wall"] for x in base_runs)
        for label, _, _ in rows:
            runs = results[label]
            wall = statistics.median(x["wall"] for x in runs)
            ratio = statistics.median(x["cpu"] / x["wall"] for x in runs)
            rss = max(x["rss"] for x in runs)
            child_rss = max(x["child_rss"] for x in runs)
            extra = f"  (largest child {child_rss:.0f} MB)" if "process" in label else ""
            paired = statistics.median(b["wall"] / x["wall"] for b, x in zip(base_runs, runs, strict=True))
            print(
                f"{label:32} {wall:7.2f} {total / 1e6 / wall:7.1f} {len(paths) / wall:7.0f} {ratio:8.2f}"
                f" {rss:7.0f} {base / wall:6.2f}x {paired:6.2f}x{extra}"
            )
            walls = ", ".join(f"{x['wall']:.2f}" for x in runs)
            print(f"{'':32} walls: {walls}")
    finally:
        shutil.rmtree(top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
