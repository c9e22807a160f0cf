"""A real ``redis-server`` on a free loopback port for the backend tests, and the skip rule when it is missing.

Without the binary (and without the ``redis`` package) every Redis test skips with the reason printed by ``-ra``;
``.ci/run`` installs Debian's ``redis-server`` first, so CI runs them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
try:
    import redis  # noqa: F401
except ImportError:  # pragma: no cover - the [redis] extra is part of [test]
    HAVE_REDIS_PY = False
else:
    HAVE_REDIS_PY = True

SKIP_REASON = (
    "redis-server is not installed (apt-get install redis-server; .ci/run does it)"
    if REDIS_SERVER is None
    else "the redis package is not installed (pip install 'ksef-async[redis]')"
)
needs_redis = pytest.mark.skipif(REDIS_SERVER is None or not HAVE_REDIS_PY, reason=SKIP_REASON)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` child process on 127.0.0.1 without persistence; `stop` and `start` simulate outages."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
