"""KSeF's fixed limits of one batch session (parts, part size, archive size, invoices) and the part-size check.

From the spec's ``BatchFileInfo``/``BatchFilePartInfo`` and the batch-session documentation: at most 50 parts, each
at most 100 MB (100,000,000 B) *before* encryption, an archive (``batchFile.fileSize``) of at most 5 GB, at most
10,000 invoices per session (status 420 beyond). Our plaintext part cap is 16 bytes lower than KSeF's, so that even
the ciphertext (padded to the next 16 bytes) stays within 100,000,000 B: a server that checks the encrypted size
(reported against KSeF) accepts it too.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from ksef_async.errors import ConfigurationError

__all__ = [
    "MAX_ARCHIVE_SIZE",
    "MAX_INVOICES",
    "MAX_PARTS",
    "MAX_PART_PLAIN_SIZE",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "check_part_size",
    "part_size_validator",
]

MAX_PART_SIZE: Final = 100_000_000
"""KSeF's limit of one part before encryption (``BatchFilePartInfo``; 21157 beyond)."""
MAX_PART_PLAIN_SIZE: Final = 99_999_984
"""Largest plaintext part we make: its ciphertext (padded to the next 16 bytes) is at most `MAX_PART_SIZE`."""
MIN_PART_SIZE: Final = 16
"""Smallest part we make: one AES block."""
MAX_PARTS: Final = 50
"""``batchFile.fileParts`` maxItems (21161 beyond)."""
MAX_ARCHIVE_SIZE: Final = 5_000_000_000
"""``batchFile.fileSize`` maximum (5 GB)."""
MAX_INVOICES: Final = 10_000
"""Invoices per session (batch status 420, online 21155 beyond)."""


def check_part_size(part_size: int, what: str = "part_size") -> int:
    """Return ``part_size`` if it is a plaintext part size we can send.

    Raises:
        ConfigurationError: It is not an integer between `MIN_PART_SIZE` and `MAX_PART_PLAIN_SIZE`.
    """
    if (
        not isinstance(part_size, int)
        or isinstance(part_size, bool)
        or not MIN_PART_SIZE <= part_size <= MAX_PART_PLAIN_SIZE
    ):
        got = f"{part_size:,}" if isinstance(part_size, int) else repr(part_size)
        msg = f"{what} must be between {MIN_PART_SIZE} and {MAX_PART_PLAIN_SIZE:,} bytes, got {got}"
        raise ConfigurationError(msg)
    return part_size


def part_size_validator(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    """The attrs validator form of `check_part_size`."""
    check_part_size(value, f"{type(instance).__name__}.{attribute.name}")
