"""Length-prefixed frames over a pipe, between prepare and its worker processes."""

from __future__ import annotations

import struct
from typing import IO, Final

HEADER: Final = struct.Struct("!Q")
"""The frame header: the payload's length."""


def write_frame(sink: IO[bytes], payload: bytes) -> None:
    """Write one frame and flush it."""
    sink.write(HEADER.pack(len(payload)))
    sink.write(payload)
    sink.flush()


def read_frame(source: IO[bytes]) -> bytes | None:
    """Read one frame; ``None`` at a clean end of the stream.

    Raises:
        EOFError: The stream ended inside a frame.
    """
    header = source.read(HEADER.size)
    if not header:
        return None
    if len(header) != HEADER.size:
        msg = "stream ended inside a frame header"
        raise EOFError(msg)
    (size,) = HEADER.unpack(header)
    payload = source.read(size)
    if len(payload) != size:
        msg = f"stream ended inside a frame ({len(payload)} of {size} bytes)"
        raise EOFError(msg)
    return payload
