"""pytest plugin (entry point ``ksef_async``): the ``ksef_simulator`` fixtures for testing code against KSeF.

Fixtures (async; run them under anyio or pytest-asyncio):

* ``ksef_simulator``: a started `KsefSimulator` in strict contract mode with one seeded context, function-scoped.
  Configure it with the marker ``@pytest.mark.ksef_simulator(rate_limits="off", processing_delay=1.0, ...)``
  (any `KsefSimulator` keyword). The test fails if the simulator saw a body that breaks the spec, or failed
  internally.
* ``ksef_simulator_credentials``: the seeded ``(nip, ksef_token)`` pair.
* ``ksef_simulator_factory``: ``await factory(**kwargs)`` starts more simulators (stopped after the test).

One fixture is synchronous:

* ``ksef_simulator_in_thread``: like ``ksef_simulator`` (same marker, same checks), but served from its own
  event-loop thread, for code that cannot share the test's loop (a CLI run with `subprocess`, a sync client).

The simulator is imported only when a fixture runs, so an import problem there never breaks pytest itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ksef_async.testing.simulator import KsefSimulator

__all__ = [
    "DEFAULT_NIP",
    "DEFAULT_TOKEN",
    "ksef_simulator",
    "ksef_simulator_credentials",
    "ksef_simulator_factory",
    "ksef_simulator_in_thread",
    "pytest_configure",
]

DEFAULT_NIP = "5265877635"
"""NIP of the seeded context (the seller of the official FA(3) sample)."""
DEFAULT_TOKEN = "20250101-EC-0000000000-0000000000-00|nip-5265877635|" + "0" * 64
"""KSeF token of the seeded context; it has every permission."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``ksef_simulator`` marker."""
    config.addinivalue_line("markers", "ksef_simulator(**kwargs): KsefSimulator options for the ksef_simulator fixture")


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("ksef_simulator")
    options: dict[str, Any] = {"contexts": [(DEFAULT_NIP, DEFAULT_TOKEN)], "strict_contract": True, "seed": 0}
    if marker is not None:
        options.update(marker.kwargs)
    return options


def _fail_on_violations(sim: KsefSimulator) -> None:
    if sim.contract_violations:
        lines = "\n".join(f"  - {v}" for v in sim.contract_violations)
        pytest.fail(f"the KSeF simulator saw bodies that break the OpenAPI contract:\n{lines}", pytrace=False)
    if sim.internal_errors:
        lines = "\n".join(f"  - {e}" for e in sim.internal_errors)
        pytest.fail(f"the KSeF simulator failed internally (a simulator bug):\n{lines}", pytrace=False)


@pytest.fixture
def ksef_simulator_credentials(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The ``(nip, ksef_token)`` seeded into ``ksef_simulator`` (the first ``contexts`` pair)."""
    contexts = list(_options(request)["contexts"])
    if not contexts:
        pytest.fail("the ksef_simulator marker set contexts=[]: there are no credentials", pytrace=False)
    nip, token = contexts[0]
    return str(nip), str(token)


@pytest.fixture
async def ksef_simulator(request: pytest.FixtureRequest) -> AsyncIterator[KsefSimulator]:
    """A started KSeF simulator (strict contract mode, one seeded context), stopped after the test."""
    from ksef_async.testing.simulator import KsefSimulator  # noqa: PLC0415 - keep pytest start-up light and safe

    sim = KsefSimulator(**_options(request))
    async with sim:
        yield sim
    _fail_on_violations(sim)


@pytest.fixture
def ksef_simulator_in_thread(request: pytest.FixtureRequest) -> Iterator[KsefSimulator]:
    """A started KSeF simulator served from its own event-loop thread (configured and checked as ``ksef_simulator``)."""
    from ksef_async.testing.simulator import KsefSimulator, serve_in_thread  # noqa: PLC0415

    with serve_in_thread(KsefSimulator(**_options(request))) as sim:
        yield sim
    _fail_on_violations(sim)


@pytest.fixture
async def ksef_simulator_factory() -> AsyncIterator[Callable[..., Awaitable[KsefSimulator]]]:
    """``await factory(**kwargs)`` returns a started simulator (strict by default); all are stopped afterwards."""
    from ksef_async.testing.simulator import KsefSimulator  # noqa: PLC0415

    started: list[KsefSimulator] = []

    async def factory(**kwargs: Any) -> KsefSimulator:
        kwargs.setdefault("strict_contract", True)
        sim = KsefSimulator(**kwargs)
        await sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in reversed(started):
        await sim.stop()
    for sim in started:
        _fail_on_violations(sim)
