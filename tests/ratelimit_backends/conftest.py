"""Redis for the backend tests: fixtures that start a real ``redis-server`` on a free loopback port and stop it.

Without the binary (and without the ``redis`` package) every Redis test skips with the reason printed by ``-ra``;
``.ci/run`` installs Debian's ``redis-server`` first, so CI runs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._redis import HAVE_REDIS_PY, REDIS_SERVER, SKIP_REASON, RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if REDIS_SERVER is None or not HAVE_REDIS_PY:
        pytest.skip(SKIP_REASON)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test alone (the outage tests stop and restart it)."""
    if REDIS_SERVER is None or not HAVE_REDIS_PY:
        pytest.skip(SKIP_REASON)
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    """A key namespace of this test alone, so tests sharing the session's server never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:12]}"
