"""Fixtures of the permission tests: a strict simulator without rate limits, and clients of owners and persons."""

from __future__ import annotations

from typing import Any

import pytest

from ksef_async.auth import CertificateCredentials, KsefTokenCredentials
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.models import (
    PermissionsOperationResponse,
    PermissionsOperationStatusResponse,
    PersonDetails,
    PersonPermissionsGrantRequest,
    PersonPermissionsSubjectIdentifier,
    PersonPermissionSubjectDetails,
)
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.certificates import TestCertificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN, ksef_simulator_factory
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.xml.auth_request import ContextIdentifier

__all__ = [
    "FAST",
    "QUICK",
    "cert_client",
    "finish",
    "ksef_simulator_factory",
    "owner_client",
    "person_grant",
    "unlimited",
]

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05), sync_rate_limits=False)
"""Client settings for tests: fast login polling, no rate-limit sync."""
FAST = Backoff(initial=0.01, factor=1.5, maximum=0.05)
"""Polling of permission operations in tests."""


def unlimited() -> RateLimiter:
    """A client-side limiter without limits: the simulator runs with ``rate_limits="off"``."""
    return RateLimiter({group: WindowLimits(None) for group in RATE_LIMIT_GROUPS})


@pytest.fixture
async def sim(ksef_simulator_factory: Any) -> KsefSimulator:
    """A strict simulator with the default context and no rate limits (the tests make many "other" calls)."""
    simulator: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=11, rate_limits="off"
    )
    return simulator


def owner_client(sim: KsefSimulator, nip: str = DEFAULT_NIP, token: str = DEFAULT_TOKEN) -> KsefClient:
    """A client logged in with the context's KSeF token (every permission of the owner)."""
    return KsefClient(
        sim.base_url, credentials=KsefTokenCredentials(token), context=nip, config=QUICK, limiter=unlimited()
    )


def cert_client(
    sim: KsefSimulator, cert: TestCertificate, context: ContextIdentifier | str, *, fingerprint: bool = False
) -> KsefClient:
    """A client that logs in with XAdES using ``cert`` (identity from the subject, or the fingerprint)."""
    credentials = CertificateCredentials.from_pem(
        cert.cert_pem,
        cert.key_pem(),
        subject_identifier_type="certificateFingerprint" if fingerprint else "certificateSubject",
    )
    return KsefClient(sim.base_url, credentials=credentials, context=context, config=QUICK, limiter=unlimited())


def person_grant(
    kind: str, value: str, *permissions: str, description: str = "Księgowość: faktury"
) -> PersonPermissionsGrantRequest:
    """A ``POST /permissions/persons/grants`` body for Jan Kowalski identified by ``kind``/``value``."""
    return PersonPermissionsGrantRequest(
        subject_identifier=PersonPermissionsSubjectIdentifier(type=kind, value=value),
        permissions=permissions,
        description=description,
        subject_details=PersonPermissionSubjectDetails(
            subject_details_type="PersonByIdentifier",
            person_by_id=PersonDetails(first_name="Jan", last_name="Kowalski"),
        ),
    )


async def finish(client: KsefClient, started: PermissionsOperationResponse) -> PermissionsOperationStatusResponse:
    """Wait for a grant or revocation to succeed."""
    return await client.permissions.wait_for_operation(started.reference_number, max_wait=10, backoff=FAST)
