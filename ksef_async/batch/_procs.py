"""Worker processes for prepare: each runs `ksef_async.batch._worker_main` and describes the batches it is sent.

Batch ``j`` goes to worker ``j % n`` and answers are read back in ``j`` order, so the input order holds without
any bookkeeping; batches are bounded by count and bytes, so the static assignment stays balanced.

A worker that fails (it cannot start, exits, is killed, raises, or stops answering) costs no work and no order: the
caller describes that batch, and every later one, in threads (`WorkerFailedError`). Describing is pure (read, check,
compress), so doing a batch twice is harmless. Every wait on a worker is capped (`ANSWER_TIMEOUT`), so a stuck
worker costs at most that, never a hang.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from ksef_async._logging import get_logger
from ksef_async.batch._frames import HEADER
from ksef_async.batch._worker import Description, Source, Unreadable

__all__ = ["ANSWER_TIMEOUT", "ProcessWorkers", "WorkerFailedError", "can_start_processes"]

_log = get_logger("batch")
_STOP_TIMEOUT: Final = 5.0
ANSWER_TIMEOUT: Final = 120.0
"""Seconds a worker may take to accept a batch or to answer one: a batch is at most 64 invoices or one invoice
over 1 MB, a fraction of a second of work, so only a stuck worker (stopped, or hung in its start-up) reaches it."""


class WorkerFailedError(Exception):
    """A worker process could not describe a batch (the reason is logged)."""


class _StuckError(Exception):
    """A worker neither took nor gave bytes within the timeout (not an `OSError`: the pipe itself is fine)."""


def can_start_processes() -> bool:
    """Whether this interpreter can start itself as a worker (not a frozen application, an executable is known).

    The capped waits on the pipes need `select.poll`, which Windows lacks: threads describe there.
    """
    return bool(sys.executable) and not getattr(sys, "frozen", False) and hasattr(select, "poll")


def _environment() -> dict[str, str]:
    # The worker must import this very ksef_async, also when the caller found it through a sys.path entry of
    # its own (a vendored copy, a test checkout).
    root = str(Path(__file__).resolve().parents[2])  # the directory that holds ksef_async/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class ProcessWorkers:
    """``count`` worker processes, each answering its requests in the order they were sent."""

    def __init__(self, count: int) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._pending = [0] * count
        self._used = False
        self.timeout = ANSWER_TIMEOUT
        env = _environment()
        try:
            for _ in range(count):
                # -P: the caller's working directory stays off the worker's sys.path (nothing there shadows a module)
                proc = subprocess.Popen(
                    [sys.executable, "-P", "-m", "ksef_async.batch._worker_main"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                    bufsize=0,
                )
                self._procs.append(proc)
                assert proc.stdin is not None
                os.set_blocking(proc.stdin.fileno(), False)  # writes wait in `_write`, capped
        except OSError as exc:
            self.close()
            raise self._failed(len(self._procs), f"it cannot start ({exc})") from None
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._procs)

    def send(self, worker: int, batch: list[Source], validate: bool, level: int) -> None:
        """Send ``batch`` to ``worker``.

        Raises:
            WorkerFailedError: The worker has gone, or took no input for `timeout` seconds.
        """
        proc = self._procs[worker]
        assert proc.stdin is not None
        payload = pickle.dumps((validate, level, batch), pickle.HIGHEST_PROTOCOL)
        try:
            self._write(proc.stdin.fileno(), memoryview(HEADER.pack(len(payload)) + payload))
        except OSError as exc:  # BrokenPipeError: it exited
            raise self._failed(worker, f"cannot send it a batch ({exc})") from None
        except _StuckError:
            raise self._failed(worker, f"it took no batch for {self.timeout:g} s") from None
        self._pending[worker] += 1
        self._used = True

    def receive(self, worker: int) -> list[Description | Unreadable]:
        """The answer to the oldest request sent to ``worker`` and not received yet.

        Raises:
            WorkerFailedError: The worker exited, raised, or did not answer within `timeout` seconds.
        """
        proc = self._procs[worker]
        assert proc.stdout is not None
        self._pending[worker] -= 1
        try:
            frame = self._read_frame(proc.stdout.fileno())
        except (OSError, EOFError) as exc:
            raise self._failed(worker, f"its answer broke off ({exc})") from None
        except _StuckError:
            raise self._failed(worker, f"no answer for {self.timeout:g} s") from None
        if frame is None:
            try:
                code: int | str = proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = "unknown"
            raise self._failed(worker, f"it exited with code {code}")
        status, value = pickle.loads(frame)  # noqa: S301 - written by our own child process
        if status != "ok":
            raise self._failed(worker, f"it raised:\n{value}")
        result: list[Description | Unreadable] = value
        return result

    def _wait(self, fd: int, event: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, event)
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise _StuckError

    def _write(self, fd: int, data: memoryview) -> None:
        """Write all of ``data`` to the non-blocking ``fd``, waiting at most `timeout` for the worker to read."""
        deadline = time.monotonic() + self.timeout
        while data:
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                self._wait(fd, select.POLLOUT, deadline)

    def _read_frame(self, fd: int) -> bytearray | None:
        """The next frame from ``fd`` (``None`` at a clean end), waiting at most `timeout` for it to arrive."""
        deadline = time.monotonic() + self.timeout
        header = self._read_exactly(fd, HEADER.size, deadline, at_start=True)
        if header is None:
            return None
        return self._read_exactly(fd, HEADER.unpack(header)[0], deadline)

    def _read_exactly(self, fd: int, size: int, deadline: float, *, at_start: bool = False) -> bytearray | None:
        # Into one buffer of the frame's size: an os.read of a large size would allocate (and map) that much
        # per call, for the at most 64 kB a pipe holds.
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            self._wait(fd, select.POLLIN, deadline)
            count = os.readv(fd, [view[got:]])
            if count == 0:
                if at_start and got == 0:
                    return None
                msg = f"the stream ended inside a frame ({got} of {size} bytes)"
                raise EOFError(msg)
            got += count
        return buffer

    def _failed(self, worker: int, reason: str) -> WorkerFailedError:
        _log.warning("prepare worker process %d failed: %s; continuing in threads", worker, reason)
        return WorkerFailedError(reason)

    def finish(self) -> None:
        """Tell every worker that no more batches come (each exits once its answers are read)."""
        for proc in self._procs:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

    def close(self) -> None:
        """End every worker: close its input and wait for it; one with answers nobody will read is killed."""
        for proc, pending in zip(self._procs, self._pending, strict=False):
            if pending > 0 or not self._used:  # answers nobody wants (the work is pure), or no work at all
                proc.kill()
        self.finish()
        for proc in self._procs:
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
