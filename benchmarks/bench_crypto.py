"""Streaming AES-256-CBC (1 MiB chunks into a reused buffer) against one large ``update_into`` on the same bytes.

Target (issue: foundation): the streaming encryptor reaches >= 80 % of the one-call throughput. Beside it, the
one-shot ``update()`` with a PKCS#7 padder that other Python clients use, for reference.

Run: ``python benchmarks/bench_crypto.py [--mib 256] [--rounds 5]``. Times are process CPU time (one thread), so a
busy machine does not distort the ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from _machine import describe
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ksef_async.core.crypto import AesCbcEncryptor, SessionKey

CHUNK = 1 << 20


def streaming(key: SessionKey, data: memoryview) -> int:
    enc = AesCbcEncryptor(key.key, key.iv)
    out = bytearray(AesCbcEncryptor.buffer_size(CHUNK))
    total = 0
    for pos in range(0, len(data), CHUNK):
        total += enc.update_into(data[pos : pos + CHUNK], out)
    return total + len(enc.finalize())


def one_update_into(key: SessionKey, data: memoryview) -> int:
    """The ceiling: the whole input in one ``update_into`` call (padding added the same way)."""
    ctx = Cipher(algorithms.AES(key.key), modes.CBC(key.iv)).encryptor()
    out = bytearray(len(data) + 16 + 15)
    n = ctx.update_into(data, out)
    pad = 16 - len(data) % 16
    return n + len(ctx.update(bytes([pad]) * pad) + ctx.finalize())


def oneshot_with_padder(key: SessionKey, data: memoryview) -> int:
    """What other Python clients do: pad a copy, then one ``update()`` that allocates the ciphertext."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(bytes(data)) + padder.finalize()
    ctx = Cipher(algorithms.AES(key.key), modes.CBC(key.iv)).encryptor()
    return len(ctx.update(padded) + ctx.finalize())


def best_rate(fn: Callable[[SessionKey, memoryview], int], key: SessionKey, data: memoryview, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn(key, data)
        best = min(best, time.process_time() - start)
    return len(data) / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="input size in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = memoryview(os.urandom(args.mib << 20))
    key = SessionKey.generate()
    print(f"machine: {describe()}")
    print(f"{args.mib} MiB, best of {args.rounds}, MB/s of plaintext (process CPU time)")
    rows = {
        "ours: streaming update_into, 1 MiB chunks": best_rate(streaming, key, data, args.rounds),
        "ceiling: one update_into over everything": best_rate(one_update_into, key, data, args.rounds),
        "baseline: padder + one-shot update()": best_rate(oneshot_with_padder, key, data, args.rounds),
    }
    for name, rate in rows.items():
        print(f"{name:<45} {rate:8.0f}")
    ratio = rows["ours: streaming update_into, 1 MiB chunks"] / rows["ceiling: one update_into over everything"]
    print(f"streaming / one call: {ratio:.1%} (target >= 80%): {'met' if ratio >= 0.8 else 'NOT met'}")


if __name__ == "__main__":
    main()
