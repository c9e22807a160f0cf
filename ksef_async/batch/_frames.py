"""Length-prefixed frames over a pipe, between prepare and its worker processes.

The worker uses the blocking file forms (`write_frame`, `read_frame`); the parent uses the descriptor forms
(`send_frame`, `receive_frame`), which wait at most until a deadline, so a stuck worker never hangs it.
"""

from __future__ import annotations

import os
import select
import struct
import time
from typing import IO, Final

_HEADER: Final = struct.Struct("!Q")


class FrameTimeoutError(Exception):
    """The other end neither took nor gave bytes before the deadline (not an `OSError`: the pipe itself is fine)."""


def write_frame(sink: IO[bytes], payload: bytes) -> None:
    """Write one frame and flush it."""
    sink.write(_HEADER.pack(len(payload)))
    sink.write(payload)
    sink.flush()


def read_frame(source: IO[bytes]) -> bytes | None:
    """Read one frame; ``None`` at a clean end of the stream.

    Raises:
        EOFError: The stream ended inside a frame.
    """
    header = source.read(_HEADER.size)
    if not header:
        return None
    if len(header) != _HEADER.size:
        msg = "stream ended inside a frame header"
        raise EOFError(msg)
    (size,) = _HEADER.unpack(header)
    payload = source.read(size)
    if len(payload) != size:
        msg = f"stream ended inside a frame ({len(payload)} of {size} bytes)"
        raise EOFError(msg)
    return payload


def _wait(fd: int, event: int, deadline: float) -> None:
    poller = select.poll()
    poller.register(fd, event)
    left = deadline - time.monotonic()
    if left <= 0 or not poller.poll(left * 1000):
        raise FrameTimeoutError


def send_frame(fd: int, payload: bytes, deadline: float) -> None:
    """Write one frame to the non-blocking ``fd``, waiting for the reader until ``deadline`` (`time.monotonic`).

    Raises:
        FrameTimeoutError: The reader took too little before the deadline.
        OSError: The pipe broke (the reader has gone).
    """
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            _wait(fd, select.POLLOUT, deadline)


def receive_frame(fd: int, deadline: float) -> bytearray | None:
    """Read one frame from ``fd`` (``None`` at a clean end), waiting for it until ``deadline`` (`time.monotonic`).

    Raises:
        FrameTimeoutError: The frame was not whole by the deadline.
        EOFError: The stream ended inside a frame.
    """
    header = _read_exactly(fd, _HEADER.size, deadline, at_start=True)
    if header is None:
        return None
    return _read_exactly(fd, _HEADER.unpack(header)[0], deadline)


def _read_exactly(fd: int, size: int, deadline: float, *, at_start: bool = False) -> bytearray | None:
    # Into one buffer of the frame's size: an os.read of a large size would allocate (and map) that much per
    # call, for the at most 64 kB a pipe holds.
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        _wait(fd, select.POLLIN, deadline)
        count = os.readv(fd, [view[got:]])
        if count == 0:
            if at_start and got == 0:
                return None
            msg = f"stream ended inside a frame ({got} of {size} bytes)"
            raise EOFError(msg)
        got += count
    return buffer
