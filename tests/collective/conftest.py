"""Fixtures of the collective-identifier tests: a strict simulator without rate limits, seeded invoices, clients."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from ksef_async.auth import KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.identifiers import generate_nip
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.operations import OPERATIONS, RATE_LIMIT_GROUPS
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN, ksef_simulator_factory
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.retrieval import seed_invoices

__all__ = ["QUICK", "SELLER", "World", "client_of", "ksef_simulator_factory"]

SELLER = DEFAULT_NIP
QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), sync_rate_limits=False)
_START = dt.datetime(2026, 7, 1, 8, tzinfo=dt.UTC)
_KNOWN = {op.operation_id for op in OPERATIONS}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "covers(*operation_ids): the spec operations this test exercises")


@pytest.fixture(autouse=True)
def _check_covers(request: pytest.FixtureRequest) -> Iterator[None]:
    """As in ``tests/surface``: each operation a test claims to cover must have been served by its simulator."""
    marker = request.node.get_closest_marker("covers")
    claimed = set(marker.args) if marker is not None else set()
    assert not claimed - _KNOWN, f"covers() names unknown operations: {sorted(claimed - _KNOWN)}"
    yield
    if not claimed:
        return
    worlds = [v for v in request.node.funcargs.values() if isinstance(v, World)]
    sims = [v for v in request.node.funcargs.values() if isinstance(v, KsefSimulator)] + [w.sim for w in worlds]
    assert sims, "a test marked covers() must use a simulator"
    served = {op for sim in sims for op, n in sim.counters.operations.items() if n}
    assert not claimed - served, f"covers() claims operations never served: {sorted(claimed - served)}"


def client_of(sim: KsefSimulator, nip: str, token: str) -> KsefClient:
    """A client logged in to ``nip`` with ``token``, without client-side rate limits."""
    limiter = RateLimiter({group: WindowLimits(None) for group in RATE_LIMIT_GROUPS})
    return KsefClient(sim.base_url, credentials=KsefTokenCredentials(token), context=nip, config=QUICK, limiter=limiter)


@attrs.frozen
class World:
    """Seller ``SELLER`` sold ``to_b1`` to ``b1`` and ``to_b2`` to ``b2``; ``other`` (a third seller) sold ``foreign``
    to ``SELLER``; ``stranger`` is on none of them. Tokens log in to each context with every permission."""

    sim: KsefSimulator
    b1: str
    b2: str
    stranger: str
    tokens: dict[str, str]
    to_b1: list[str]
    to_b2: list[str]
    foreign: list[str]


@pytest.fixture
async def world(ksef_simulator_factory: Any) -> World:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(SELLER, DEFAULT_TOKEN)], seed=17, rate_limits="off")
    rng = random.Random(5)
    b1, b2, stranger, other = (generate_nip(rng) for _ in range(4))
    tokens = {SELLER: DEFAULT_TOKEN, **{nip: sim.add_context(nip) for nip in (b1, b2, stranger)}}
    end = _START + dt.timedelta(days=2)
    to_b1 = seed_invoices(sim, b1, 14, _START, end, sellers=[SELLER], seed=1)
    to_b2 = seed_invoices(sim, b2, 3, _START, end, sellers=[SELLER], seed=2)
    foreign = seed_invoices(sim, SELLER, 2, _START, end, sellers=[other], seed=3)
    return World(sim, b1, b2, stranger, tokens, to_b1, to_b2, foreign)
