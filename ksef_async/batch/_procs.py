"""Worker processes for prepare: each runs `ksef_async.batch._worker_main` and describes the batches it is sent.

Batch ``j`` goes to worker ``j % n`` and answers are read back in ``j`` order, so the input order holds without
any bookkeeping; batches are bounded by count and bytes, so the static assignment stays balanced.

Each worker has its own two pipes (requests in, answers out). On Linux, for two workers or more, one process is
started: it imports its modules, compiles the schema and forks the workers, so the start-up is paid once; it kills
and reaps them when its stdin closes (`ProcessWorkers.close`, or this process's exit). Elsewhere each worker is a
process of its own.

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
import threading
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
_FORKS: Final = sys.platform == "linux"  # one started process forks the others (see the module docstring)
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
    """``count`` workers, each answering its requests in the order they were sent."""

    def __init__(self, count: int) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []  # the supervisor (its stdin open), or one per worker
        self._channels: list[tuple[int, int]] = []  # per worker: (requests, write end; answers, read end)
        self._used = False
        self.timeout = ANSWER_TIMEOUT
        theirs: list[tuple[int, int]] = []  # per worker: (requests, read end; answers, write end)
        try:
            for _ in range(count):
                requests, requests_in = os.pipe()
                try:
                    answers_out, answers = os.pipe()
                except OSError:
                    os.close(requests)
                    os.close(requests_in)
                    raise
                theirs.append((requests, answers))
                self._channels.append((requests_in, answers_out))
                os.set_blocking(requests_in, False)  # writes wait in `send_frame`, capped
            env = _environment()
            supervised = _FORKS and count > 1
            for group in [theirs] if supervised else [[pair] for pair in theirs]:
                # -P: the caller's working directory stays off the worker's sys.path (nothing there shadows a module)
                command = [sys.executable, "-P", "-m", "ksef_async.batch._worker_main", *(f"{r},{w}" for r, w in group)]
                self._procs.append(
                    subprocess.Popen(  # noqa: S603 - this interpreter, our module, descriptor numbers
                        command,
                        stdin=subprocess.PIPE if supervised else subprocess.DEVNULL,
                        env=env,
                        pass_fds=[fd for pair in group for fd in pair],
                    )
                )
        except OSError as exc:
            self.close()
            raise self._failed(len(self._procs), f"it cannot start ({exc})") from None
        except BaseException:
            self.close()
            raise
        finally:
            for pair in theirs:
                for fd in pair:
                    os.close(fd)

    def __len__(self) -> int:
        return len(self._channels)

    def send(self, worker: int, batch: list[Source], validate: bool, level: int) -> None:
        """Send ``batch`` to ``worker``.

        Raises:
            WorkerFailedError: The worker has gone, or took no input for `timeout` seconds.
        """
        wire = [(s.name, s.path) if isinstance(s, PendingFile) else s for s in batch]
        payload = pickle.dumps((validate, level, wire), pickle.HIGHEST_PROTOCOL)
        try:
            send_frame(self._channels[worker][0], payload, time.monotonic() + self.timeout)
        except OSError as exc:  # BrokenPipeError: it exited
            raise self._failed(worker, f"cannot send it a batch ({exc})") from None
        except FrameTimeoutError:
            raise self._failed(worker, f"it took no batch for {self.timeout:g} s") from None
        self._used = True

    def receive(self, worker: int) -> list[Description | Unreadable]:
        """The answer to the oldest request sent to ``worker`` and not received yet.

        Raises:
            WorkerFailedError: The worker exited, raised, or did not answer within `timeout` seconds.
        """
        try:
            frame = receive_frame(self._channels[worker][1], time.monotonic() + self.timeout)
        except (OSError, EOFError) as exc:
            raise self._failed(worker, f"its answer broke off ({exc})") from None
        except FrameTimeoutError:
            raise self._failed(worker, f"no answer for {self.timeout:g} s") from None
        if frame is None:
            raise self._failed(worker, "it exited")
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
        for worker, (requests, answers) in enumerate(self._channels):
            if requests >= 0:
                os.close(requests)
                self._channels[worker] = (-1, answers)

    def close(self) -> None:
        """End every worker: whatever one still does is no longer wanted (describing is pure)."""
        self.finish()
        for proc in self._procs:
            if proc.stdin is None:
                proc.kill()
            else:  # the supervisor kills and reaps its workers
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for proc in self._procs:
            if proc.stdin is not None and not self._used:
                # Ended unused (a run too small for processes): the supervisor may still be starting, and ends
                # once started; reaped meanwhile, rather than making this run wait for its start.
                threading.Thread(target=proc.wait, name="ksef-prepare-reaper", daemon=True).start()
                continue
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:  # a stopped supervisor: its workers end with their requests
                proc.kill()
                proc.wait()
        for _, answers in self._channels:
            if answers >= 0:
                os.close(answers)
        self._channels.clear()
        self._procs.clear()
