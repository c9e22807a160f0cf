"""A prepare worker process: ``python -m ksef_async.batch._worker_main``, started by `ksef_async.batch._procs`.

It reads framed requests ``(validate, level, batch)`` on stdin and answers each, in order, with one framed
``("ok", descriptions)`` or ``("error", traceback)`` on stdout; end of input ends it. A separate module from
`ksef_async.batch._worker` so that the classes in the answers pickle under their own module names, not ``__main__``.

Its own entry point, not multiprocessing's spawn: a spawned child imports the caller's main module (the reason the
multiprocessing docs require an ``if __name__ == "__main__"`` guard), and a library cannot require its callers to
have one. This process imports what describing needs and nothing of the caller's.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from typing import IO

from ksef_async.batch._frames import read_frame, write_frame
from ksef_async.batch._worker import describe_batch, warm_up


def _read_requests(source: IO[bytes], requests: queue.SimpleQueue[bytes | None]) -> None:
    # Drains stdin whatever the main thread is doing, so that the parent never blocks writing a request while
    # this process blocks writing an answer the parent has not read yet.
    try:
        while (frame := read_frame(source)) is not None:
            requests.put(frame)
    finally:
        requests.put(None)


def main() -> int:
    """Serve requests until stdin ends."""
    # Ctrl-C reaches the whole process group: the parent handles it and ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by accident goes to stderr, not into the answer stream
    requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(sys.stdin.buffer, requests), daemon=True).start()
    warm_up(validate=True)
    while (frame := requests.get()) is not None:
        try:
            validate, level, batch = pickle.loads(frame)  # noqa: S301 - written by our own parent process
            answer: tuple[str, object] = ("ok", describe_batch(batch, validate, level))
        except Exception:  # noqa: BLE001 - the parent describes the batch itself and raises it there
            answer = ("error", traceback.format_exc())
        write_frame(answers, pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))
    answers.close()
    return 0


if __name__ == "__main__":
    code = main()
    # Nothing is left to clean up: skipping the interpreter's teardown (freeing the schemas and modules) ends the
    # worker ~20 ms sooner, and the end of every prepare run waits for its workers to end.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
