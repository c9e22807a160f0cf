"""Worker processes for prepare: each runs `ksef_async.batch._worker_main` and describes the batches it is sent.

Batch ``j`` goes to worker ``j % n`` and answers are read back in ``j`` order, so the input order holds without
any bookkeeping; batches are bounded by count and bytes, so the static assignment stays balanced.

A worker that fails (it cannot start, exits, is killed, or raises) costs no work and no order: the caller describes
that batch, and every later one, in threads (`WorkerFailedError`). Describing is pure (read, check, compress), so
doing a batch twice is harmless.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Final

from ksef_async._logging import get_logger
from ksef_async.batch._frames import read_frame, write_frame
from ksef_async.batch._worker import Description, Source, Unreadable

__all__ = ["ProcessWorkers", "WorkerFailedError", "can_start_processes"]

_log = get_logger("batch")
_STOP_TIMEOUT: Final = 5.0


class WorkerFailedError(Exception):
    """A worker process could not describe a batch (the reason is logged)."""


def can_start_processes() -> bool:
    """Whether this interpreter can start itself as a worker (not a frozen application, an executable is known)."""
    return bool(sys.executable) and not getattr(sys, "frozen", False)


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
        env = _environment()
        try:
            for _ in range(count):
                self._procs.append(
                    subprocess.Popen(  # this interpreter, a module of this package
                        [sys.executable, "-m", "ksef_async.batch._worker_main"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=env,
                    )
                )
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
            WorkerFailedError: The worker has gone.
        """
        proc = self._procs[worker]
        assert proc.stdin is not None
        try:
            write_frame(proc.stdin, pickle.dumps((validate, level, batch), pickle.HIGHEST_PROTOCOL))
        except OSError as exc:  # BrokenPipeError: it exited
            raise self._failed(worker, f"cannot send it a batch ({exc})") from None
        self._pending[worker] += 1
        self._used = True

    def receive(self, worker: int) -> list[Description | Unreadable]:
        """The answer to the oldest request sent to ``worker`` and not received yet.

        Raises:
            WorkerFailedError: The worker exited or raised instead of answering.
        """
        proc = self._procs[worker]
        assert proc.stdout is not None
        self._pending[worker] -= 1
        try:
            frame = read_frame(proc.stdout)
        except (OSError, EOFError) as exc:
            raise self._failed(worker, f"its answer broke off ({exc})") from None
        if frame is None:
            raise self._failed(worker, f"it exited with code {proc.wait()}")
        status, value = pickle.loads(frame)  # noqa: S301 - written by our own child process
        if status != "ok":
            raise self._failed(worker, f"it raised:\n{value}")
        result: list[Description | Unreadable] = value
        return result

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
