"""Every permission operation through ``client.permissions`` against the simulator, and what grants let holders do.

Each of the 19 operation ids appears in a test name here (the coverage test looks for them).
"""

from __future__ import annotations

import random

import aiohttp
import pytest

from ksef_async.core.identifiers import generate_internal_id, generate_nip, generate_pesel
from ksef_async.errors import (
    ConfigurationError,
    DeadlineExceededError,
    ForbiddenError,
    GoneError,
    OperationFailedError,
)
from ksef_async.models import (
    AttachmentPermissionGrantRequest,
    EntityAuthorizationPermissionsGrantRequest,
    EntityAuthorizationPermissionsQueryRequest,
    EntityAuthorizationPermissionsSubjectIdentifier,
    EntityAuthorizationsAuthorizedEntityIdentifier,
    EntityAuthorizationsAuthorizingEntityIdentifier,
    EntityDetails,
    EntityPermission,
    EntityPermissionsContextIdentifier,
    EntityPermissionsGrantRequest,
    EntityPermissionsQueryRequest,
    EntityPermissionsSubjectIdentifier,
    EntityPermissionsSubordinateEntityIdentifier,
    EuEntityAdministrationPermissionsContextIdentifier,
    EuEntityAdministrationPermissionsGrantRequest,
    EuEntityAdministrationPermissionsSubjectIdentifier,
    EuEntityDetails,
    EuEntityPermissionsGrantRequest,
    EuEntityPermissionsQueryRequest,
    EuEntityPermissionsSubjectIdentifier,
    EuEntityPermissionSubjectDetails,
    FormCode,
    IndirectPermissionsGrantRequest,
    IndirectPermissionsSubjectIdentifier,
    IndirectPermissionsTargetIdentifier,
    PersonalPermissionsQueryRequest,
    PersonByFingerprintWithIdentifierDetails,
    PersonCreateRequest,
    PersonDetails,
    PersonIdentifier,
    PersonPermissionsAuthorizedIdentifier,
    PersonPermissionsQueryRequest,
    PersonPermissionSubjectDetails,
    SubjectCreateRequest,
    SubordinateEntityRolesQueryRequest,
    SubunitPermissionsContextIdentifier,
    SubunitPermissionsGrantRequest,
    SubunitPermissionsQueryRequest,
    SubunitPermissionsSubjectIdentifier,
    SubunitPermissionsSubunitIdentifier,
)
from ksef_async.models import (
    TestDataAuthorizedIdentifier as TdAuthorizedIdentifier,
)
from ksef_async.models import (
    TestDataContextIdentifier as TdContextIdentifier,
)
from ksef_async.models import (
    TestDataPermission as TdPermission,
)
from ksef_async.models import (
    TestDataPermissionsGrantRequest as TdGrantRequest,
)
from ksef_async.testing.certificates import TestCertificate, generate_person_certificate, generate_seal_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.xml.auth_request import ContextIdentifier

from .conftest import FAST, cert_client, finish, owner_client, person_grant

pytestmark = pytest.mark.anyio

FA3 = FormCode(system_code="FA (3)", schema_version="1-0E", value="FA")
PESEL = "15062788702"
IN_CONTEXT = PersonPermissionsQueryRequest(query_type="PermissionsInCurrentContext")
GRANTED_HERE = PersonPermissionsQueryRequest(query_type="PermissionsGrantedInCurrentContext")


def person_cert(pesel: str = PESEL) -> TestCertificate:
    return generate_person_certificate(given_name="Jan", surname="Kowalski", pesel=pesel, algorithm="ec")


async def test_post_permissions_persons_grants_and_post_permissions_query_persons_grants(sim: KsefSimulator) -> None:
    async with owner_client(sim) as client:
        started = await client.permissions.grant_to_person(person_grant("Pesel", PESEL, "InvoiceWrite", "InvoiceRead"))
        status = await finish(client, started)
        in_force = [p async for p in client.permissions.query_persons(IN_CONTEXT)]
        by_me = [p async for p in client.permissions.query_persons(GRANTED_HERE)]
        only_read = [
            p
            async for p in client.permissions.query_persons(
                PersonPermissionsQueryRequest(
                    query_type="PermissionsInCurrentContext", permission_types=("InvoiceRead",)
                )
            )
        ]
    assert status.status.code == 200
    assert sorted(str(p.permission_scope) for p in in_force) == ["InvoiceRead", "InvoiceWrite"]
    first = in_force[0]
    assert (first.authorized_identifier.type, first.authorized_identifier.value) == ("Pesel", PESEL)
    assert first.context_identifier is not None
    assert first.context_identifier.value == DEFAULT_NIP
    assert first.author_identifier.value == DEFAULT_NIP  # the seeded token's author: the context's NIP
    assert first.subject_person_details is not None
    assert first.subject_person_details.last_name == "Kowalski"
    assert str(first.permission_state) == "Active"
    assert {p.id for p in by_me} == {p.id for p in in_force}
    assert [str(p.permission_scope) for p in only_read] == ["InvoiceRead"]


async def test_delete_permissions_common_grants_by_permission_id_scenario_login_open_revoke(
    sim: KsefSimulator,
) -> None:
    """Grant InvoiceWrite to a person -> the person logs in with XAdES and opens a session -> revoke -> 403."""
    cert = person_cert()
    async with owner_client(sim) as owner:
        await finish(
            owner, await owner.permissions.grant_to_person(person_grant("Pesel", PESEL, "InvoiceWrite", "InvoiceRead"))
        )
        async with cert_client(sim, cert, DEFAULT_NIP) as person:
            session = await person.online.open(FA3)
            await person.online.close(session.reference_number)
            mine = [p async for p in person.permissions.query_personal()]
            assert sorted(str(p.permission_scope) for p in mine) == ["InvoiceRead", "InvoiceWrite"]

            listed = [p async for p in owner.permissions.query_persons(IN_CONTEXT)]
            write = next(p for p in listed if p.permission_scope == "InvoiceWrite")
            status = await finish(owner, await owner.permissions.revoke(write.id))
            assert status.status.code == 200
            left = [str(p.permission_scope) async for p in owner.permissions.query_persons(IN_CONTEXT)]
            assert left == ["InvoiceRead"]

            # Permissions are evaluated at login: the access token issued before the revocation keeps them.
            again = await person.online.open(FA3)
            await person.online.close(again.reference_number)

        async with cert_client(sim, cert, DEFAULT_NIP) as person:
            with pytest.raises(ForbiddenError) as info:
                await person.online.open(FA3)
    assert info.value.status == 403
    assert info.value.reason_code == "missing-permissions"


async def test_post_permissions_query_personal_grants_filters(sim: KsefSimulator) -> None:
    cert = person_cert()
    async with owner_client(sim) as owner:
        await finish(
            owner, await owner.permissions.grant_to_person(person_grant("Pesel", PESEL, "InvoiceRead", "Introspection"))
        )
    async with cert_client(sim, cert, DEFAULT_NIP) as person:
        everything = [str(p.permission_scope) async for p in person.permissions.query_personal()]
        only = [
            str(p.permission_scope)
            async for p in person.permissions.query_personal(
                PersonalPermissionsQueryRequest(permission_types=("Introspection",))
            )
        ]
        inactive = [
            p
            async for p in person.permissions.query_personal(
                PersonalPermissionsQueryRequest(permission_state="Inactive")
            )
        ]
    assert sorted(everything) == ["Introspection", "InvoiceRead"]
    assert only == ["Introspection"]
    assert inactive == []


async def test_get_permissions_operations_by_reference_number_moves_from_100_to_200_then_gone(
    ksef_simulator_factory: object,
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(  # type: ignore[operator]
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)],
        rate_limits="off",
        processing_delay=0.3,
    )
    async with owner_client(sim) as client:
        started = await client.permissions.grant_to_person(person_grant("Pesel", PESEL, "InvoiceRead"))
        first = await client.permissions.operation_status(started.reference_number)
        final = await client.permissions.wait_for_operation(started.reference_number, max_wait=10, backoff=FAST)
        sim.clock.advance(31 * 24 * 3600)
        with pytest.raises(GoneError):
            await client.permissions.operation_status(started.reference_number)
    assert first.status.code == 100
    assert final.status.code == 200


async def test_enforcement_operations_need_a_role_operation_fails_430(sim: KsefSimulator) -> None:
    async with owner_client(sim) as client:
        started = await client.permissions.grant_to_person(person_grant("Pesel", PESEL, "EnforcementOperations"))
        with pytest.raises(OperationFailedError) as info:
            await client.permissions.wait_for_operation(started.reference_number, max_wait=10, backoff=FAST)
        assert [p async for p in client.permissions.query_persons(IN_CONTEXT)] == []
        # With the bailiff role (test data) the same grant succeeds.
        await client.testdata.create_person(
            PersonCreateRequest(
                nip=DEFAULT_NIP, pesel=generate_pesel(random.Random(5)), is_bailiff=True, description="Komornik"
            )
        )
        await finish(
            client, await client.permissions.grant_to_person(person_grant("Pesel", PESEL, "EnforcementOperations"))
        )
        roles = [str(r.role) async for r in client.permissions.entity_roles()]
    assert info.value.code == 430
    assert info.value.reference_number == started.reference_number
    assert roles == ["CourtBailiff"]


async def test_post_permissions_entities_grants_and_post_permissions_query_entities_grants(sim: KsefSimulator) -> None:
    partner = generate_nip(random.Random(21))
    async with owner_client(sim) as client:
        request = EntityPermissionsGrantRequest(
            subject_identifier=EntityPermissionsSubjectIdentifier(type="Nip", value=partner),
            permissions=(
                EntityPermission(type="InvoiceWrite", can_delegate=True),
                EntityPermission(type="InvoiceRead"),
            ),
            description="Biuro rachunkowe",
            subject_details=EntityDetails(full_name="Biuro Rachunkowe Sp. z o.o."),
        )
        await finish(client, await client.permissions.grant_to_entity(request))
        in_force = [p async for p in client.permissions.query_persons(IN_CONTEXT)]
    assert {(str(p.permission_scope), p.can_delegate) for p in in_force} == {
        ("InvoiceWrite", True),
        ("InvoiceRead", False),
    }
    # The partner (a seal with its NIP) sees what it received in its own context...
    seal = generate_seal_certificate(organization_name="Biuro", nip=partner, algorithm="ec")
    async with cert_client(sim, seal, partner) as own:
        received = [p async for p in own.permissions.query_entities()]
        own_view = [p async for p in own.permissions.query_personal()]  # the owner sees them among its own
        filtered = [
            p
            async for p in own.permissions.query_entities(
                EntityPermissionsQueryRequest(
                    context_identifier=EntityPermissionsContextIdentifier(type="Nip", value="1111111111")
                )
            )
        ]
    assert {str(p.permission_scope) for p in received} == {"InvoiceWrite", "InvoiceRead"}
    assert all(p.context_identifier.value == DEFAULT_NIP for p in received)
    assert filtered == []
    assert {str(p.permission_scope) for p in own_view} == {"InvoiceWrite", "InvoiceRead"}
    assert all(p.context_identifier is not None and p.context_identifier.value == DEFAULT_NIP for p in own_view)
    # ...and logs in to the granting context with the granted permissions: it can issue invoices there.
    async with cert_client(sim, seal, DEFAULT_NIP) as acting:
        session = await acting.online.open(FA3)
        await acting.online.close(session.reference_number)


async def test_post_permissions_indirect_grants_needs_delegation(sim: KsefSimulator) -> None:
    """A client lets the office pass InvoiceWrite on; the office grants it to its accountant for that client."""
    rng = random.Random(31)
    office, client_nip = DEFAULT_NIP, generate_nip(rng)
    client_token = sim.add_context(client_nip)
    indirect = IndirectPermissionsGrantRequest(
        subject_identifier=IndirectPermissionsSubjectIdentifier(type="Pesel", value=PESEL),
        target_identifier=IndirectPermissionsTargetIdentifier(type="Nip", value=client_nip),
        permissions=("InvoiceWrite",),
        description="Księgowa klienta",
        subject_details=PersonPermissionSubjectDetails(
            subject_details_type="PersonByIdentifier", person_by_id=PersonDetails(first_name="Anna", last_name="Nowak")
        ),
    )
    async with owner_client(sim) as office_client:
        refused = await office_client.permissions.grant_indirect(indirect)
        with pytest.raises(OperationFailedError) as info:
            await office_client.permissions.wait_for_operation(refused.reference_number, max_wait=10, backoff=FAST)
        assert info.value.code == 440

        async with owner_client(sim, client_nip, client_token) as client:
            await finish(
                client,
                await client.permissions.grant_to_entity(
                    EntityPermissionsGrantRequest(
                        subject_identifier=EntityPermissionsSubjectIdentifier(type="Nip", value=office),
                        permissions=(EntityPermission(type="InvoiceWrite", can_delegate=True),),
                        description="Biuro rachunkowe",
                        subject_details=EntityDetails(full_name="Biuro Rachunkowe"),
                    )
                ),
            )
        await finish(office_client, await office_client.permissions.grant_indirect(indirect))
        listed = [p async for p in office_client.permissions.query_persons(IN_CONTEXT)]
    assert [(str(p.permission_scope), p.target_identifier.value if p.target_identifier else None) for p in listed] == [
        ("InvoiceWrite", client_nip)
    ]
    # The accountant now issues invoices in the client's context.
    async with cert_client(sim, person_cert(), client_nip) as accountant:
        session = await accountant.online.open(FA3)
        await accountant.online.close(session.reference_number)


def self_invoicing(partner: str) -> EntityAuthorizationPermissionsGrantRequest:
    return EntityAuthorizationPermissionsGrantRequest(
        subject_identifier=EntityAuthorizationPermissionsSubjectIdentifier(type="Nip", value=partner),
        permission="SelfInvoicing",
        description="Samofakturowanie dostawcy",
        subject_details=EntityDetails(full_name="Dostawca Sp. z o.o."),
    )


async def test_post_permissions_authorizations_grants_and_post_permissions_query_authorizations_grants(
    sim: KsefSimulator,
) -> None:
    partner = generate_nip(random.Random(41))
    partner_token = sim.add_context(partner)
    async with owner_client(sim) as client:
        await finish(client, await client.permissions.grant_authorization(self_invoicing(partner)))
        granted = [
            g
            async for g in client.permissions.query_authorizations(
                EntityAuthorizationPermissionsQueryRequest(
                    query_type="Granted",
                    authorized_identifier=EntityAuthorizationsAuthorizedEntityIdentifier(type="Nip", value=partner),
                )
            )
        ]
        other_types = [
            g
            async for g in client.permissions.query_authorizations(
                EntityAuthorizationPermissionsQueryRequest(query_type="Granted", permission_types=("PefInvoicing",))
            )
        ]
    async with owner_client(sim, partner, partner_token) as other:
        received = [
            g
            async for g in other.permissions.query_authorizations(
                EntityAuthorizationPermissionsQueryRequest(
                    query_type="Received",
                    authorizing_identifier=EntityAuthorizationsAuthorizingEntityIdentifier(
                        type="Nip", value=DEFAULT_NIP
                    ),
                    permission_types=("SelfInvoicing",),
                )
            )
        ]
        granted_by_partner = [
            g
            async for g in other.permissions.query_authorizations(
                EntityAuthorizationPermissionsQueryRequest(query_type="Granted")
            )
        ]
    assert [(str(g.authorization_scope), g.authorizing_entity_identifier.value) for g in granted] == [
        ("SelfInvoicing", DEFAULT_NIP)
    ]
    assert granted[0].authorized_entity_identifier.value == partner
    assert granted[0].subject_entity_details is not None
    assert granted[0].subject_entity_details.full_name == "Dostawca Sp. z o.o."
    assert other_types == []
    assert [g.id for g in received] == [granted[0].id]
    assert granted_by_partner == []


async def test_delete_permissions_authorizations_grants_by_permission_id(sim: KsefSimulator) -> None:
    partner = generate_nip(random.Random(42))
    granted_query = EntityAuthorizationPermissionsQueryRequest(query_type="Granted")
    async with owner_client(sim) as client:
        await finish(client, await client.permissions.grant_authorization(self_invoicing(partner)))
        [granted] = [g async for g in client.permissions.query_authorizations(granted_query)]
        # The common revocation does not take entity authorizations...
        wrong = await client.permissions.revoke(granted.id)
        with pytest.raises(OperationFailedError) as info:
            await client.permissions.wait_for_operation(wrong.reference_number, max_wait=10, backoff=FAST)
        still = [g.id async for g in client.permissions.query_authorizations(granted_query)]
        # ...their own does.
        await finish(client, await client.permissions.revoke_authorization(granted.id))
        after = [g async for g in client.permissions.query_authorizations(granted_query)]
    assert info.value.code == 400
    assert still == [granted.id]
    assert after == []


async def test_post_permissions_subunits_grants_and_post_permissions_query_subunits_grants(sim: KsefSimulator) -> None:
    rng = random.Random(51)
    unit = generate_internal_id(DEFAULT_NIP, rng)
    admin_cert = person_cert()
    request = SubunitPermissionsGrantRequest(
        subject_identifier=SubunitPermissionsSubjectIdentifier(type="Pesel", value=PESEL),
        context_identifier=SubunitPermissionsContextIdentifier(type="InternalId", value=unit),
        description="Administrator oddziału",
        subunit_name="Oddział Kraków",
        subject_details=PersonPermissionSubjectDetails(
            subject_details_type="PersonByIdentifier",
            person_by_id=PersonDetails(first_name="Jan", last_name="Kowalski"),
        ),
    )
    async with owner_client(sim) as client:
        await finish(client, await client.permissions.grant_subunit_admin(request))
        listed = [p async for p in client.permissions.query_subunits()]
        by_unit = [
            p
            async for p in client.permissions.query_subunits(
                SubunitPermissionsQueryRequest(
                    subunit_identifier=SubunitPermissionsSubunitIdentifier(type="InternalId", value=unit)
                )
            )
        ]
        # An InternalId of another NIP is in the wrong relation (410); a NIP subunit needs a JST/VAT group role (430).
        foreign = generate_internal_id(generate_nip(rng), rng)
        for context, code in ((("InternalId", foreign), 410), (("Nip", generate_nip(rng)), 430)):
            bad = SubunitPermissionsGrantRequest(
                subject_identifier=request.subject_identifier,
                context_identifier=SubunitPermissionsContextIdentifier(type=context[0], value=context[1]),
                description="Administrator oddziału",
                subunit_name="Oddział obcy",
                subject_details=request.subject_details,
            )
            started = await client.permissions.grant_subunit_admin(bad)
            with pytest.raises(OperationFailedError) as info:
                await client.permissions.wait_for_operation(started.reference_number, max_wait=10, backoff=FAST)
            assert info.value.code == code
    assert [(p.subunit_identifier.value, str(p.permission_scope), p.subunit_name) for p in listed] == [
        (unit, "CredentialsManage", "Oddział Kraków")
    ]
    assert [p.id for p in by_unit] == [listed[0].id]
    # The administrator logs in to the subunit's context and manages permissions there.
    async with cert_client(sim, admin_cert, ContextIdentifier("InternalId", unit)) as admin:
        other = generate_pesel(rng)
        await finish(admin, await admin.permissions.grant_to_person(person_grant("Pesel", other, "InvoiceWrite")))
        inside = [p async for p in admin.permissions.query_persons(IN_CONTEXT)]
    # In force in the subunit: its administrator and the permission the administrator granted there.
    assert sorted(
        (
            p.authorized_identifier.value,
            str(p.permission_scope),
            p.context_identifier.value if p.context_identifier else None,
        )
        for p in inside
    ) == sorted([(other, "InvoiceWrite", unit), (PESEL, "CredentialsManage", unit)])


async def test_get_permissions_query_entities_roles_and_post_permissions_query_subordinate_entities_roles(
    sim: KsefSimulator,
) -> None:
    rng = random.Random(61)
    members = sorted(generate_nip(rng) for _ in range(12))
    async with owner_client(sim) as client:
        assert [r async for r in client.permissions.entity_roles()] == []
        await client.testdata.create_subject(
            SubjectCreateRequest(subject_nip=DEFAULT_NIP, subject_type="VatGroup", description="Grupa VAT Test")
        )
        # The simulator's subunit registry (``/testdata/subject`` subunits).
        sim.state.subunits[DEFAULT_NIP] = {nip: f"Członek grupy {nip}" for nip in members}
        roles = [r async for r in client.permissions.entity_roles()]
        subordinates = [r async for r in client.permissions.subordinate_entity_roles(page_size=10)]
        one = [
            r
            async for r in client.permissions.subordinate_entity_roles(
                SubordinateEntityRolesQueryRequest(
                    subordinate_entity_identifier=EntityPermissionsSubordinateEntityIdentifier(
                        type="Nip", value=members[3]
                    )
                )
            )
        ]
        # A member may now be given an administrator (NIP subunit grant from the VAT group).
        await finish(
            client,
            await client.permissions.grant_subunit_admin(
                SubunitPermissionsGrantRequest(
                    subject_identifier=SubunitPermissionsSubjectIdentifier(type="Pesel", value=PESEL),
                    context_identifier=SubunitPermissionsContextIdentifier(type="Nip", value=members[0]),
                    description="Administrator członka grupy",
                    subject_details=PersonPermissionSubjectDetails(
                        subject_details_type="PersonByIdentifier",
                        person_by_id=PersonDetails(first_name="Jan", last_name="Kowalski"),
                    ),
                )
            ),
        )
    assert [(str(r.role), r.description) for r in roles] == [("VatGroupUnit", "Grupa VAT")]
    assert [r.subordinate_entity_identifier.value for r in subordinates] == members  # two pages of 10
    assert {str(r.role) for r in subordinates} == {"VatGroupSubUnit"}
    assert [r.subordinate_entity_identifier.value for r in one] == [members[3]]
    # A member sees its own role and its parent.
    member_token = sim.add_context(members[0])
    async with owner_client(sim, members[0], member_token) as member:
        member_roles = [r async for r in member.permissions.entity_roles()]
    assert [
        (str(r.role), r.parent_entity_identifier.value if r.parent_entity_identifier else None) for r in member_roles
    ] == [("VatGroupSubUnit", DEFAULT_NIP)]


EU_CONTEXT = f"{DEFAULT_NIP}-DE123456789"


def fp_details(first: str, last: str, pesel: str) -> EuEntityPermissionSubjectDetails:
    return EuEntityPermissionSubjectDetails(
        subject_details_type="PersonByFingerprintWithIdentifier",
        person_by_fp_with_id=PersonByFingerprintWithIdentifierDetails(
            first_name=first, last_name=last, identifier=PersonIdentifier(type="Pesel", value=pesel)
        ),
    )


async def appoint_eu_admin(sim: KsefSimulator) -> TestCertificate:
    """The owner makes Hans Müller (by certificate fingerprint) administrator of Beispiel GmbH (NIP-DE...)."""
    admin = generate_person_certificate(given_name="Hans", surname="Müller", pesel=PESEL, algorithm="ec")
    request = EuEntityAdministrationPermissionsGrantRequest(
        subject_identifier=EuEntityAdministrationPermissionsSubjectIdentifier(
            type="Fingerprint", value=admin.fingerprint
        ),
        context_identifier=EuEntityAdministrationPermissionsContextIdentifier(type="NipVatUe", value=EU_CONTEXT),
        description="Administrator podmiotu unijnego",
        eu_entity_name="Beispiel GmbH",
        subject_details=fp_details("Hans", "Müller", PESEL),
        eu_entity_details=EuEntityDetails(full_name="Beispiel GmbH", address="Hauptstraße 1, Berlin"),
    )
    async with owner_client(sim) as client:
        await finish(client, await client.permissions.grant_eu_entity_admin(request))
    return admin


async def test_post_permissions_eu_entities_administration_grants_and_post_permissions_query_eu_entities_grants(
    sim: KsefSimulator,
) -> None:
    admin = await appoint_eu_admin(sim)
    async with owner_client(sim) as client:
        admins = [p async for p in client.permissions.query_eu_entities()]
        other_entity = [
            p
            async for p in client.permissions.query_eu_entities(
                EuEntityPermissionsQueryRequest(vat_ue_identifier="FR12345678901")
            )
        ]
        wrong_context = EuEntityAdministrationPermissionsGrantRequest(
            subject_identifier=EuEntityAdministrationPermissionsSubjectIdentifier(
                type="Fingerprint", value=admin.fingerprint
            ),
            context_identifier=EuEntityAdministrationPermissionsContextIdentifier(
                type="NipVatUe", value="1111111111-DE123456789"
            ),
            description="Administrator podmiotu unijnego",
            eu_entity_name="Beispiel GmbH",
            subject_details=fp_details("Hans", "Müller", PESEL),
            eu_entity_details=EuEntityDetails(full_name="Beispiel GmbH", address="Hauptstraße 1, Berlin"),
        )
        refused = await client.permissions.grant_eu_entity_admin(wrong_context)
        with pytest.raises(OperationFailedError) as info:
            await client.permissions.wait_for_operation(refused.reference_number, max_wait=10, backoff=FAST)
    assert sorted(str(p.permission_scope) for p in admins) == [
        "Introspection",
        "InvoiceRead",
        "InvoiceWrite",
        "VatUeManage",
    ]
    assert {(p.vat_ue_identifier, p.eu_entity_name, p.authorized_fingerprint_identifier) for p in admins} == {
        ("DE123456789", "Beispiel GmbH", admin.fingerprint)
    }
    assert admins[0].eu_entity_details is not None
    assert admins[0].eu_entity_details.address == "Hauptstraße 1, Berlin"
    assert other_entity == []
    assert info.value.code == 410  # the NIP-VAT UE context must start with the granting context's NIP


async def test_post_permissions_eu_entities_grants_by_the_administrator(sim: KsefSimulator) -> None:
    admin = await appoint_eu_admin(sim)
    representative = generate_person_certificate(
        given_name="Eva", surname="Schmidt", pesel="22271569167", algorithm="ec"
    )
    eu_context = ContextIdentifier("NipVatUe", EU_CONTEXT)
    # The administrator logs in to the NIP-VAT UE context by fingerprint and appoints a representative.
    async with cert_client(sim, admin, eu_context, fingerprint=True) as eu:
        await finish(
            eu,
            await eu.permissions.grant_eu_entity(
                EuEntityPermissionsGrantRequest(
                    subject_identifier=EuEntityPermissionsSubjectIdentifier(
                        type="Fingerprint", value=representative.fingerprint
                    ),
                    permissions=("InvoiceWrite",),
                    description="Przedstawiciel podmiotu unijnego",
                    subject_details=fp_details("Eva", "Schmidt", "22271569167"),
                )
            ),
        )
        everyone = [p async for p in eu.permissions.query_eu_entities()]
        representatives = [
            p
            async for p in eu.permissions.query_eu_entities(
                EuEntityPermissionsQueryRequest(authorized_fingerprint_identifier=representative.fingerprint)
            )
        ]
    assert len(everyone) == 5  # four administrator permissions and the representative's
    assert [(str(p.permission_scope), p.eu_entity_name) for p in representatives] == [("InvoiceWrite", "Beispiel GmbH")]
    # The representative issues invoices for the EU entity.
    async with cert_client(sim, representative, eu_context, fingerprint=True) as rep:
        session = await rep.online.open(FA3)
        await rep.online.close(session.reference_number)


async def test_post_permissions_eu_entities_grants_needs_vat_ue_manage(sim: KsefSimulator) -> None:
    # The owner of a NIP context has no VatUeManage: only an EU entity's administrator appoints representatives.
    async with owner_client(sim) as client:
        with pytest.raises(ForbiddenError):
            await client.permissions.grant_eu_entity(
                EuEntityPermissionsGrantRequest(
                    subject_identifier=EuEntityPermissionsSubjectIdentifier(type="Fingerprint", value="A" * 64),
                    permissions=("InvoiceRead",),
                    description="Przedstawiciel podmiotu unijnego",
                    subject_details=EuEntityPermissionSubjectDetails(
                        subject_details_type="PersonByFingerprintWithIdentifier",
                        person_by_fp_with_id=PersonByFingerprintWithIdentifierDetails(
                            first_name="Eva",
                            last_name="Schmidt",
                            identifier=PersonIdentifier(type="Pesel", value=PESEL),
                        ),
                    ),
                )
            )


async def test_get_permissions_attachments_status(sim: KsefSimulator) -> None:
    async with owner_client(sim) as client:
        before = await client.permissions.attachment_status()
        await client.testdata.allow_attachments(AttachmentPermissionGrantRequest(nip=DEFAULT_NIP))
        after = await client.permissions.attachment_status()
    assert before.is_attachment_allowed is False
    assert after.is_attachment_allowed is True


async def test_testdata_grants_are_listed_as_system_and_revocable(sim: KsefSimulator) -> None:
    cert = person_cert()
    async with owner_client(sim) as client:
        await client.testdata.grant_permissions(
            TdGrantRequest(
                context_identifier=TdContextIdentifier(type="Nip", value=DEFAULT_NIP),
                authorized_identifier=TdAuthorizedIdentifier(type="Pesel", value=PESEL),
                permissions=(TdPermission(permission_type="InvoiceWrite", description="Dane testowe"),),
            )
        )
        listed = [
            p
            async for p in client.permissions.query_persons(
                PersonPermissionsQueryRequest(
                    query_type="PermissionsInCurrentContext",
                    authorized_identifier=PersonPermissionsAuthorizedIdentifier(type="Pesel", value=PESEL),
                )
            )
        ]
        assert [(str(p.author_identifier.type), str(p.permission_scope)) for p in listed] == [
            ("System", "InvoiceWrite")
        ]
        await finish(client, await client.permissions.revoke(listed[0].id))
    async with cert_client(sim, cert, DEFAULT_NIP) as person:
        with pytest.raises(OperationFailedError):  # no permission left at all: the login itself fails (415)
            await person.login()


async def test_post_permissions_query_persons_grants_pages_by_offset(sim: KsefSimulator) -> None:
    rng = random.Random(71)
    pesels = [generate_pesel(rng) for _ in range(23)]
    async with owner_client(sim) as client:
        for pesel in pesels:
            await finish(client, await client.permissions.grant_to_person(person_grant("Pesel", pesel, "InvoiceRead")))
        by_ten = [p async for p in client.permissions.query_persons(IN_CONTEXT, page_size=10)]
        by_default = [p async for p in client.permissions.query_persons(IN_CONTEXT)]
        by_hundred = [p async for p in client.permissions.query_persons(IN_CONTEXT, page_size=100)]
        with pytest.raises(ConfigurationError):
            [p async for p in client.permissions.query_persons(IN_CONTEXT, page_size=5)]
    assert sorted(p.authorized_identifier.value for p in by_ten) == sorted(pesels)
    assert len({p.id for p in by_ten}) == 23
    assert [p.id for p in by_default] == [p.id for p in by_ten] == [p.id for p in by_hundred]
    # startDate descending: the newest grant first.
    assert by_ten[0].authorized_identifier.value == pesels[-1]
    assert [p.start_date for p in by_ten] == sorted((p.start_date for p in by_ten), reverse=True)


async def test_post_permissions_indirect_grants_to_all_partners_follow_the_delegations(sim: KsefSimulator) -> None:
    """AllPartners: the accountant works for every client that let the office pass the permission on, until the
    client takes it back."""
    client_nip = generate_nip(random.Random(81))
    client_token = sim.add_context(client_nip)
    async with owner_client(sim, client_nip, client_token) as client:
        await finish(
            client,
            await client.permissions.grant_to_entity(
                EntityPermissionsGrantRequest(
                    subject_identifier=EntityPermissionsSubjectIdentifier(type="Nip", value=DEFAULT_NIP),
                    permissions=(EntityPermission(type="InvoiceRead", can_delegate=True),),
                    description="Biuro rachunkowe",
                    subject_details=EntityDetails(full_name="Biuro Rachunkowe"),
                )
            ),
        )
        [delegation] = [p async for p in client.permissions.query_persons(IN_CONTEXT)]
        async with owner_client(sim) as office:
            await finish(
                office,
                await office.permissions.grant_indirect(
                    IndirectPermissionsGrantRequest(
                        subject_identifier=IndirectPermissionsSubjectIdentifier(type="Pesel", value=PESEL),
                        target_identifier=IndirectPermissionsTargetIdentifier(type="AllPartners"),
                        permissions=("InvoiceRead",),
                        description="Księgowa wszystkich klientów",
                        subject_details=PersonPermissionSubjectDetails(
                            subject_details_type="PersonByIdentifier",
                            person_by_id=PersonDetails(first_name="Anna", last_name="Nowak"),
                        ),
                    )
                ),
            )
        async with cert_client(sim, person_cert(), client_nip) as accountant:
            mine = [p async for p in accountant.permissions.query_personal()]
        assert [(str(p.permission_scope), p.target_identifier.type if p.target_identifier else None) for p in mine] == [
            ("InvoiceRead", "AllPartners")
        ]
        # The client revokes the delegation: the accountant's next login there has no permission at all (415).
        await finish(client, await client.permissions.revoke(delegation.id))
    async with cert_client(sim, person_cert(), client_nip) as accountant:
        with pytest.raises(OperationFailedError) as info:
            await accountant.login()
    assert info.value.code == 415


async def test_post_permissions_query_persons_grants_checks_page_parameters_on_the_server(sim: KsefSimulator) -> None:
    async with owner_client(sim) as client, aiohttp.ClientSession() as http:
        token, _ = await client.authenticator.access_token()
        url = f"{sim.base_url}/permissions/query/persons/grants"
        headers = {"Authorization": f"Bearer {token}", "X-Error-Format": "problem-details"}
        body = {"queryType": "PermissionsInCurrentContext"}
        statuses = []
        for params in ({"pageSize": "5"}, {"pageSize": "101"}, {"pageOffset": "-1"}, {"pageSize": "x"}):
            async with http.post(url, json=body, params=params, headers=headers) as response:
                statuses.append(response.status)
        async with http.post(url, json=body, params={"pageOffset": "7"}, headers=headers) as response:
            beyond = await response.json()
    assert statuses == [400, 400, 400, 400]
    assert beyond == {"permissions": [], "hasMore": False}


async def test_wait_for_operation_gives_up_at_its_deadline(ksef_simulator_factory: object) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(  # type: ignore[operator]
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)],
        rate_limits="off",
        processing_delay=60.0,
    )
    async with owner_client(sim) as client:
        started = await client.permissions.grant_to_person(person_grant("Pesel", PESEL, "InvoiceRead"))
        with pytest.raises(DeadlineExceededError):
            await client.permissions.wait_for_operation(started.reference_number, max_wait=0.2, backoff=FAST)
