"""Base64 and SHA-256 as KSeF writes them, without ``cryptography``.

Apart from `ksef_async.core.crypto` (which re-exports both) so that a prepare pool worker and the validator need
not import ``cryptography`` (~0.1 s per spawned worker) to hash an invoice.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["b64", "sha256_b64"]


def b64(data: bytes) -> str:
    """Standard Base64 (with padding), as KSeF uses for hashes, keys and content."""
    return base64.b64encode(data).decode("ascii")


def sha256_b64(data: bytes | bytearray | memoryview) -> str:
    """Base64 of the SHA-256 digest (KSeF's ``Sha256HashBase64``, 44 characters)."""
    return b64(hashlib.sha256(data).digest())
