"""Fixtures of the API-surface tests, and the ``covers`` marker: a test names the operations it exercises.

``@pytest.mark.covers("post_tokens", ...)`` is what `tests/test_coverage.py` reads (statically) to decide which
operations have a simulator-backed test; the autouse fixture below keeps those claims honest: after the test, the
simulators it used must have served each named operation at least once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ksef_async.auth import CertificateCredentials, KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.operations import OPERATIONS
from ksef_async.testing.certificates import TestCertificate, generate_person_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN, ksef_simulator_factory
from ksef_async.testing.simulator import KsefSimulator

__all__ = ["QUICK", "cert_client", "ksef_simulator_factory", "token_client"]

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))
_KNOWN = {op.operation_id for op in OPERATIONS}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "covers(*operation_ids): the spec operations this test exercises")


@pytest.fixture(autouse=True)
def _check_covers(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("covers")
    claimed = set(marker.args) if marker is not None else set()
    unknown = claimed - _KNOWN
    assert not unknown, f"covers() names operations the spec does not have: {sorted(unknown)}"
    yield
    if not claimed or not hasattr(request.node, "funcargs"):
        return
    sims = [v for v in request.node.funcargs.values() if isinstance(v, KsefSimulator)]
    assert sims, "a test marked covers() must use a KsefSimulator fixture"
    served = {op for sim in sims for op, n in sim.counters.operations.items() if n}
    missing = claimed - served
    assert not missing, f"covers() claims operations the simulator never served: {sorted(missing)}"


@pytest.fixture
async def sim(ksef_simulator_factory: Any) -> KsefSimulator:
    """A strict simulator with the default context and production rate limits."""
    simulator: KsefSimulator = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=11)
    return simulator


@pytest.fixture(scope="session")
def owner_cert() -> TestCertificate:
    """A person's certificate carrying the default context's NIP: its XAdES logins own the context."""
    return generate_person_certificate(given_name="Anna", surname="Nowak", nip=DEFAULT_NIP, algorithm="ec")


def token_client(sim: KsefSimulator, token: str = DEFAULT_TOKEN, **kwargs: Any) -> KsefClient:
    """A client logging in to the default context with a KSeF token."""
    return KsefClient(
        sim.base_url, credentials=KsefTokenCredentials(token), context=DEFAULT_NIP, config=QUICK, **kwargs
    )


def cert_client(
    sim: KsefSimulator,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    fingerprint: bool = False,
    context: str = DEFAULT_NIP,
) -> KsefClient:
    """A client logging in with XAdES (by subject, or by fingerprint)."""
    credentials = CertificateCredentials.from_pem(
        cert_pem,
        key_pem,
        subject_identifier_type="certificateFingerprint" if fingerprint else "certificateSubject",
    )
    return KsefClient(sim.base_url, credentials=credentials, context=context, config=QUICK)
