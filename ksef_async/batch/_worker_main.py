"""Prepare worker processes: ``python -m ksef_async.batch._worker_main REQUESTS,ANSWERS [REQUESTS,ANSWERS ...]``.

Each argument is one worker's pair of inherited pipe descriptors: it reads framed requests ``(validate, level,
batch)`` from the first and answers each, in order, with one framed ``("ok", descriptions)`` or ``("error",
traceback)`` on the second; the end of its requests ends it. Started by `ksef_async.batch._procs`; a separate module
from `ksef_async.batch._worker` so that the classes in the answers pickle under their own module names, not
``__main__``.

Its own entry point, not multiprocessing's spawn: a spawned child imports the caller's main module (the reason the
multiprocessing docs require an ``if __name__ == "__main__"`` guard), and a library cannot require its callers to
have one. This process imports what describing needs and nothing of the caller's.

Given one pair, the process is that worker. Given several (Linux: elsewhere the caller starts one process per
worker, as macOS's system libraries are not safe to use after a fork), it imports its modules and compiles the
schema, then forks one worker per pair, before any thread exists: the start-up (~0.1 s of CPU, mostly imports) is
paid once, not once per worker. It then waits for the end of its stdin (the caller closing it, or exiting) and
kills and reaps its workers: they are its children, not the caller's, and only it can reap them.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from typing import IO, NoReturn

from ksef_async.batch._frames import read_frame, write_frame
from ksef_async.batch._worker import describe_batch, warm_up

Channel = tuple[int, int]


def _read_requests(source: IO[bytes], requests: queue.SimpleQueue[bytes | None]) -> None:
    # Drains the requests whatever the main thread is doing, so that the parent never blocks writing a request
    # while this process blocks writing an answer the parent has not read yet.
    try:
        while (frame := read_frame(source)) is not None:
            requests.put(frame)
    finally:
        requests.put(None)


def _serve(channel: Channel) -> None:
    source = os.fdopen(channel[0], "rb")
    answers = os.fdopen(channel[1], "wb")
    requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(source, requests), daemon=True).start()
    with source, answers:
        while (frame := requests.get()) is not None:  # None: the reader has read its last frame
            try:
                validate, level, batch = pickle.loads(frame)  # noqa: S301 - written by our own parent process
                answer: tuple[str, object] = ("ok", describe_batch(batch, validate, level))
            except Exception:  # noqa: BLE001 - the parent describes the batch itself and raises it there
                answer = ("error", traceback.format_exc())
            write_frame(answers, pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))


def _channels(args: list[str]) -> list[Channel]:
    pairs = [tuple(int(fd) for fd in arg.split(",")) for arg in args]
    if not pairs or any(len(pair) != 2 for pair in pairs):  # noqa: PLR2004 - a pair
        sys.exit("usage: python -m ksef_async.batch._worker_main REQUESTS,ANSWERS [REQUESTS,ANSWERS ...]")
    return [(pair[0], pair[1]) for pair in pairs]


def _forked_worker(channel: Channel, channels: list[Channel]) -> NoReturn:
    code = 0
    try:
        for other in channels:
            if other != channel:
                os.close(other[0])
                os.close(other[1])
        _serve(channel)
    except BaseException:  # noqa: BLE001 - reported, and the worker ends; the parent sees its answers end
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)  # never back into the supervisor's code


def _supervise(channels: list[Channel]) -> None:
    gc.freeze()  # the modules and the schema stay shared with the workers (a collection would touch them)
    workers: list[int] = []
    for channel in channels:
        try:
            pid = os.fork()
        except OSError:  # the workers not forked find their channels closed: the caller describes their batches
            traceback.print_exc()
            break
        if pid == 0:
            _forked_worker(channel, channels)
        workers.append(pid)
    for channel in channels:
        os.close(channel[0])
        os.close(channel[1])
    while sys.stdin.buffer.read(65536):  # the caller writes nothing: this returns when it closes stdin or exits
        pass
    for pid in workers:
        os.kill(pid, signal.SIGKILL)  # still a child (at worst a zombie) until reaped below: the id is ours
    for pid in workers:
        os.waitpid(pid, 0)


def main(args: list[str]) -> int:
    """Be the worker of the one channel in ``args``, or fork and supervise one worker per channel."""
    # Ctrl-C reaches the caller, which ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channels = _channels(args)
    os.dup2(2, 1)  # anything printed by accident goes to stderr
    warm_up()
    if len(channels) == 1:
        _serve(channels[0])
    else:
        _supervise(channels)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Nothing is left to clean up: skipping the interpreter's teardown (freeing the schemas and modules) ends the
    # worker ~20 ms sooner, and the end of every prepare run waits for its workers to end.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
