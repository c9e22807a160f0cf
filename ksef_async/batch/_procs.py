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
from ksef_async.batch._frames import FrameTimeoutError, receive_frame, send_frame
from ksef_async.batch._worker import Description, Source, Unreadable
from ksef_async.batch.inputs import PendingFile

__all__ = ["ANSWER_TIMEOUT", "ProcessWorkers", "WorkerFailedError", "can_start_processes"]

_log = get_logger("batch")
_STOP_TIMEOUT: Final = 5.0
ANSWER_TIMEOUT: Final = 120.0
"""Seconds a worker may take to accept a batch or to answer one: a batch is at most 64 invoices or one invoice
over 1 MB, a fraction of a second of work, so only a stuck worker (stopped, or hung in its start-up) reaches it."""


class WorkerFailedError(Exception):
    """A worker process could not describe a batch (the reason is logged)."""


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
        wire = [(s.name, s.path) if isinstance(s, PendingFile) else s for s in batch]
        payload = pickle.dumps((validate, level, wire), pickle.HIGHEST_PROTOCOL)
        try:
            send_frame(proc.stdin.fileno(), payload, time.monotonic() + self.timeout)
        except OSError as exc:  # BrokenPipeError: it exited
            raise self._failed(worker, f"cannot send it a batch ({exc})") from None
        except FrameTimeoutError:
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
            frame = receive_frame(proc.stdout.fileno(), time.monotonic() + self.timeout)
        except (OSError, EOFError) as exc:
            raise self._failed(worker, f"its answer broke off ({exc})") from None
        except FrameTimeoutError:
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
