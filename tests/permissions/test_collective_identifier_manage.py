"""``CollectiveIdentifierManage`` (API 2.7+) end to end: grantable to persons, entities, indirectly, as test data,
in tokens, and enough on its own for the collective-identifier operations."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from ksef_async.core.identifiers import generate_nip
from ksef_async.errors import ForbiddenError
from ksef_async.models import (
    EntityDetails,
    EntityPermission,
    EntityPermissionsGrantRequest,
    EntityPermissionsSubjectIdentifier,
    IndirectPermissionsGrantRequest,
    IndirectPermissionsSubjectIdentifier,
    IndirectPermissionsTargetIdentifier,
    PersonDetails,
    PersonPermissionsQueryRequest,
    PersonPermissionSubjectDetails,
    TestDataAuthorizedIdentifier,
    TestDataContextIdentifier,
    TestDataPermission,
    TestDataPermissionsGrantRequest,
)
from ksef_async.testing.certificates import generate_person_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.retrieval import seed_invoices

from .conftest import cert_client, finish, owner_client, person_grant

pytestmark = pytest.mark.anyio

CI = "CollectiveIdentifierManage"
PESEL = "15062788702"
IN_CONTEXT = PersonPermissionsQueryRequest(query_type="PermissionsInCurrentContext")


def _invoices(sim: KsefSimulator) -> list[str]:
    start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
    buyer = generate_nip(random.Random(3))
    return seed_invoices(sim, buyer, 2, start, start + dt.timedelta(hours=1), sellers=[DEFAULT_NIP], seed=4)


async def test_post_permissions_persons_grants_entities_and_indirect_take_collective_identifier_manage(
    sim: KsefSimulator,
) -> None:
    partner = generate_nip(random.Random(8))
    async with owner_client(sim) as owner:
        await finish(owner, await owner.permissions.grant_to_person(person_grant("Pesel", PESEL, CI)))
        await finish(
            owner,
            await owner.permissions.grant_to_entity(
                EntityPermissionsGrantRequest(
                    subject_identifier=EntityPermissionsSubjectIdentifier(type="Nip", value=partner),
                    permissions=(EntityPermission(type=CI),),
                    description="Bank: identyfikatory zbiorcze",
                    subject_details=EntityDetails(full_name="Bank S.A."),
                )
            ),
        )
        await finish(
            owner,
            await owner.permissions.grant_indirect(
                IndirectPermissionsGrantRequest(
                    subject_identifier=IndirectPermissionsSubjectIdentifier(type="Pesel", value=PESEL),
                    target_identifier=IndirectPermissionsTargetIdentifier(type="AllPartners"),
                    permissions=(CI,),
                    description="Identyfikatory zbiorcze klientów",
                    subject_details=PersonPermissionSubjectDetails(
                        subject_details_type="PersonByIdentifier",
                        person_by_id=PersonDetails(first_name="Jan", last_name="Kowalski"),
                    ),
                )
            ),
        )
        in_force = [str(p.permission_scope) async for p in owner.permissions.query_persons(IN_CONTEXT)]
    assert in_force.count(CI) >= 2  # the person's and the indirect grant (entities list separately)


async def test_post_testdata_permissions_collective_identifier_manage_alone_is_enough(sim: KsefSimulator) -> None:
    numbers = _invoices(sim)
    cert = generate_person_certificate(given_name="Jan", surname="Kowalski", pesel=PESEL, algorithm="ec")
    async with owner_client(sim) as owner:
        await owner.testdata.grant_permissions(
            TestDataPermissionsGrantRequest(
                context_identifier=TestDataContextIdentifier(type="Nip", value=DEFAULT_NIP),
                authorized_identifier=TestDataAuthorizedIdentifier(type="Pesel", value=PESEL),
                permissions=(TestDataPermission(permission_type=CI, description="identyfikatory zbiorcze"),),
            )
        )
    async with cert_client(sim, cert, DEFAULT_NIP) as person:
        number = await person.collective_identifiers.create(numbers)
        found = [c.collective_identifier_number async for c in person.collective_identifiers.by_ksef_number(numbers[0])]
        with pytest.raises(ForbiddenError):  # nothing more: downloading an invoice needs InvoiceRead
            await person.retrieval.get_invoice(numbers[0])
    assert found == [number]
    assert sim.counters.operations["post_testdata_permissions"] == 1
