"""Peak RSS of `prepare` on 1 GB and 2 GB of invoices, beside the in-memory baselines, in one run.

Run: ``python benchmarks/bench_prepare_rss.py`` (a few minutes; ``--count``/``--size-kb`` to change). Every row runs
in a fresh subprocess and reports the peak resident set size of that process (``VmHWM`` from
``/proc/self/status``, i.e. ``ru_maxrss``), so the rows do not share a heap. Invoices come from `InvoiceFactory`
(~100 kB each, distinct) and are generated on the fly:

- ``ours``: `prepare_batch_sync` pulls them from a generator one at a time. 2x runs twice: twice the invoices,
  and the same count twice as big, because memory grows with the count (plan metadata), not with the bytes. XSD
  validation is off by default (``--validate`` turns it on: it adds CPU time, not memory) so the run takes
  minutes; ciphertext goes to a temporary spool directory that is deleted afterwards.
- ``baseline: stdlib`` and ``baseline: ksef-client 0.20.0``: their APIs take the whole file set (a ``dict`` of
  name -> bytes), so the invoices are collected first, as a caller of those APIs must; then ``zipfile`` (or
  ``build_zip``), split, one-shot encryption per part (or ``encrypt_batch_parts``).

``python``: the peak RSS of an interpreter that only imported the modules, for reference.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from _machine import describe

SELLER = "5265877635"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # noqa: PLC0415 - fallback off Linux

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def invoices(count: int, size_kb: float) -> Iterator[tuple[str, bytes]]:
    from ksef_async.testing.invoices import InvoiceFactory  # noqa: PLC0415

    return InvoiceFactory(SELLER, seed=11, size_kb=size_kb).iter(count)


def child(mode: str, count: int, size_kb: float, validate: bool) -> dict[str, object]:
    from cryptography.hazmat.primitives import padding  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: PLC0415

    from ksef_async.batch import prepare_batch_sync  # noqa: PLC0415
    from ksef_async.core.crypto import SessionKey, sha256_b64  # noqa: PLC0415
    from ksef_async.core.pipeline import MAX_PART_PLAIN_SIZE  # noqa: PLC0415

    started = time.perf_counter()
    total = 0
    zip_size = 0
    if mode == "python":
        pass
    elif mode == "ours":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        state = Path(tempfile.mkdtemp(prefix="bench-rss-"))
        try:

            def counted() -> Iterator[tuple[str, bytes]]:
                nonlocal total
                for name, data in invoices(count, size_kb):
                    total += len(data)
                    yield name, data

            plan = prepare_batch_sync(counted(), public_key=key, state_dir=state / "s", validate=validate)
            zip_size = sum(s.file_size or 0 for s in plan.sessions)
        finally:
            shutil.rmtree(state)
    else:
        files = dict(invoices(count, size_kb))  # these APIs take the whole file set at once
        total = sum(len(d) for d in files.values())
        session = SessionKey.generate()
        if mode == "stdlib":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, data in files.items():
                    zf.writestr(name, data)
            archive = buffer.getvalue()
            parts = []
            for start in range(0, len(archive), MAX_PART_PLAIN_SIZE):
                padder = padding.PKCS7(128).padder()
                padded = padder.update(archive[start : start + MAX_PART_PLAIN_SIZE]) + padder.finalize()
                enc = Cipher(algorithms.AES(session.key), modes.CBC(session.iv)).encryptor()
                parts.append(enc.update(padded) + enc.finalize())
            hashes = [sha256_b64(archive), *(sha256_b64(p) for p in parts)]
            assert hashes
        else:
            from ksef_client.services.batch import encrypt_batch_parts  # noqa: PLC0415
            from ksef_client.utils.zip_utils import build_zip  # noqa: PLC0415

            archive = build_zip(files)
            _parts, _info = encrypt_batch_parts(archive, session.key, session.iv)
        zip_size = len(archive)
    return {
        "peak_mb": peak_rss_mb(),
        "bytes_in": total,
        "zip_bytes": zip_size,
        "seconds": time.perf_counter() - started,
    }


def run_child(mode: str, count: int, size_kb: float, validate: bool) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--child", mode, "--count", str(count), "--size-kb", str(size_kb)]
    if validate:
        cmd.append("--validate")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="invoices in the 1x input (default 10,000)")
    parser.add_argument("--size-kb", type=float, default=100, help="invoice size in kB (default 100)")
    parser.add_argument("--validate", action="store_true", help="run XSD validation in 'ours'")
    parser.add_argument("--skip-2x-baselines", action="store_true", help="baselines only at 1x (saves RAM/time)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.count, args.size_kb, args.validate)))
        return 0
    print(f"machine: {describe()}")
    rows: list[tuple[str, str, int, float]] = [
        ("python (imports only)", "python", 1, 1),
        ("ours: prepare, 1x", "ours", 1, 1),
        ("ours: prepare, 2x (twice the invoices)", "ours", 2, 1),
        ("ours: prepare, 2x (invoices twice as big)", "ours", 1, 2),
        ("baseline: stdlib in memory, 1x", "stdlib", 1, 1),
        ("baseline: ksef-client 0.20.0, 1x", "ksef-client", 1, 1),
    ]
    if not args.skip_2x_baselines:
        rows += [
            ("baseline: stdlib in memory, 2x", "stdlib", 2, 1),
            ("baseline: ksef-client 0.20.0, 2x", "ksef-client", 2, 1),
        ]
    print(f"{'row':42} {'invoices':>9} {'input MB':>9} {'zip MB':>8} {'peak RSS MB':>12} {'seconds':>8}")
    for label, mode, scale, size_scale in rows:
        count = args.count * scale
        r = run_child(mode, count, args.size_kb * size_scale, args.validate)
        print(
            f"{label:42} {count:9,} {int(r['bytes_in']) / 1e6:9,.0f} {int(r['zip_bytes']) / 1e6:8,.0f} "  # type: ignore[call-overload]
            f"{float(r['peak_mb']):12,.0f} {float(r['seconds']):8.1f}"  # type: ignore[arg-type]
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
