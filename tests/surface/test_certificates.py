"""KSeF certificates through ``client.certificates`` against the simulator: enroll, log in, query, revoke, limits."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ksef_async import models
from ksef_async.core.csr import build_csr, enrollment_subject, generate_key
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import (
    AuthenticationFailedError,
    BadRequestError,
    ConfigurationError,
    ForbiddenError,
    GoneError,
    OperationFailedError,
)
from ksef_async.models import (
    CertificateEnrollmentDataResponse,
    CertificateListItemStatus,
    CertificateSubjectLimitsOverride,
    EnrollCertificateRequest,
    EnrollmentSubjectLimitsOverride,
    KsefCertificateType,
    QueryCertificatesRequest,
    SetSubjectLimitsRequest,
)
from ksef_async.testing.certificates import TestCertificate, generate_seal_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP
from ksef_async.testing.simulator import KsefSimulator

from .conftest import cert_client, token_client

pytestmark = pytest.mark.anyio

SPEC = Path(__file__).parents[2] / "schemas" / "openapi.json"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


async def _raw_enroll(client: Any, csr: bytes, name: str = "Raw request") -> BadRequestError:
    with pytest.raises(BadRequestError) as refused:
        await client.certificates.submit_enrollment(
            EnrollCertificateRequest(certificate_name=name, certificate_type="Authentication", csr=csr)
        )
    return refused.value


@pytest.mark.parametrize("algorithm", ["ec", "rsa"])
@pytest.mark.covers(
    "get_certificates_enrollments_data",
    "post_certificates_enrollments",
    "get_certificates_enrollments_by_reference_number",
    "post_certificates_retrieve",
    "post_auth_xades_signature",
)
async def test_enrolled_authentication_certificate_logs_in_with_xades(
    sim: KsefSimulator, owner_cert: TestCertificate, algorithm: str
) -> None:
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        data = await owner.certificates.enrollment_data()
        enrolled = await owner.certificates.enroll("Surface auth cert", algorithm=algorithm)  # type: ignore[arg-type]

    assert data.serial_number == f"TINPL-{DEFAULT_NIP}"
    assert enrolled.certificate.subject == enrollment_subject(data)
    assert enrolled.certificate.issuer != enrolled.certificate.subject  # signed by the simulator's CA
    assert f"{enrolled.certificate.serial_number:016X}" == enrolled.serial_number
    usage = enrolled.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.content_commitment
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert enrolled.certificate.public_key().public_bytes(serialization.Encoding.DER, spki) == (
        enrolled.key.public_key().public_bytes(serialization.Encoding.DER, spki)
    )
    assert "key=" not in repr(enrolled)

    async with cert_client(sim, _pem(enrolled.certificate), _key_pem(enrolled.key)) as client:
        await client.login()
        limits = await client.limits.context()
    assert limits.online_session.max_invoices > 0
    assert sim.counters.operations["post_auth_xades_signature"] == 2

    # By fingerprint, the certificate itself is the identity: it needs permissions of its own.
    fingerprint = enrolled.certificate.fingerprint(hashes.SHA256()).hex().upper()
    async with cert_client(sim, _pem(enrolled.certificate), _key_pem(enrolled.key), fingerprint=True) as client:
        with pytest.raises(AuthenticationFailedError) as no_permissions:
            await client.login()
        await client.testdata.grant_permissions(
            models.TestDataPermissionsGrantRequest(
                context_identifier=models.TestDataContextIdentifier(type="Nip", value=DEFAULT_NIP),
                authorized_identifier=models.TestDataAuthorizedIdentifier(type="Fingerprint", value=fingerprint),
                permissions=(
                    models.TestDataPermission(permission_type="InvoiceRead", description="reader by fingerprint"),
                ),
            )
        )
        await client.login()
    assert no_permissions.value.code == 415


@pytest.mark.covers("post_certificates_revoke", "post_certificates_query")
async def test_revoked_certificate_is_listed_as_revoked_and_cannot_log_in(
    sim: KsefSimulator, owner_cert: TestCertificate
) -> None:
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        enrolled = await owner.certificates.enroll("To be revoked")
        await owner.certificates.revoke(enrolled.serial_number, "KeyCompromise")
        (item,) = [c async for c in owner.certificates.query()]
        with pytest.raises(BadRequestError) as again:
            await owner.certificates.revoke(enrolled.serial_number)
        with pytest.raises(BadRequestError) as unknown:
            await owner.certificates.revoke("0123456789ABCDEF")
    assert item.certificate_serial_number == enrolled.serial_number
    assert item.status == CertificateListItemStatus.REVOKED
    assert again.value.has_code(25009)
    assert unknown.value.has_code(25008)

    async with cert_client(sim, _pem(enrolled.certificate), _key_pem(enrolled.key)) as client:
        with pytest.raises(AuthenticationFailedError) as failed:
            await client.login()
    assert failed.value.code == 460


@pytest.mark.covers("post_certificates_enrollments", "post_certificates_revoke")
async def test_offline_certificate_signs_but_cannot_log_in(sim: KsefSimulator, owner_cert: TestCertificate) -> None:
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        enrolled = await owner.certificates.enroll("Offline signer", KsefCertificateType.OFFLINE, algorithm="rsa")
    assert enrolled.certificate_type == KsefCertificateType.OFFLINE
    usage = enrolled.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.content_commitment
    assert not usage.digital_signature
    async with cert_client(sim, _pem(enrolled.certificate), _key_pem(enrolled.key)) as client:
        with pytest.raises(AuthenticationFailedError) as failed:
            await client.login()
    assert failed.value.code == 460
    async with token_client(sim) as client:  # revoking is not for KSeF-token logins
        with pytest.raises(ForbiddenError):
            await client.certificates.revoke(enrolled.serial_number)


@pytest.mark.covers("get_certificates_enrollments_data", "post_certificates_enrollments")
async def test_enrollment_needs_a_signature_login_and_a_matching_valid_csr(
    sim: KsefSimulator, owner_cert: TestCertificate
) -> None:
    key = generate_key("ec")
    async with token_client(sim) as client:
        with pytest.raises(BadRequestError) as no_data:
            await client.certificates.enrollment_data()
        data = CertificateEnrollmentDataResponse(common_name="Anna Nowak", country_name="PL")
        not_allowed = await _raw_enroll(client, build_csr(data, key))
    assert no_data.value.has_code(25001)
    assert not_allowed.has_code(25002)

    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        data = await owner.certificates.enrollment_data()
        other = CertificateEnrollmentDataResponse(
            common_name=data.common_name, country_name="PL", given_name="Anna", surname="Nowak"
        )  # serialNumber missing
        mismatch = await _raw_enroll(owner, build_csr(other, key))
        garbage = await _raw_enroll(owner, b"not a CSR")
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        weak_csr = (
            x509.CertificateSigningRequestBuilder().subject_name(enrollment_subject(data)).sign(weak, hashes.SHA256())
        )
        short_key = await _raw_enroll(owner, weak_csr.public_bytes(serialization.Encoding.DER))
        sha224_csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(enrollment_subject(data))
            .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA224())
        )
        bad_hash = await _raw_enroll(owner, sha224_csr.public_bytes(serialization.Encoding.DER))
        assert [c async for c in owner.certificates.query()] == []
    assert mismatch.has_code(25003)
    assert garbage.has_code(25004)
    assert short_key.has_code(25010)
    assert bad_hash.has_code(25011)


@pytest.mark.covers(
    "get_certificates_limits",
    "get_limits_subject",
    "post_testdata_limits_subject_certificate",
    "delete_testdata_limits_subject_certificate",
)
async def test_enrollment_and_certificate_limits_apply(sim: KsefSimulator, owner_cert: TestCertificate) -> None:
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        defaults = await owner.limits.subject()
        await owner.testdata.set_certificate_limits(
            SetSubjectLimitsRequest(
                subject_identifier_type="Nip",
                enrollment=EnrollmentSubjectLimitsOverride(max_enrollments=2),
                certificate=CertificateSubjectLimitsOverride(max_certificates=1),
            )
        )
        subject = await owner.limits.subject()
        before = await owner.certificates.limits()
        first = await owner.certificates.enroll("Only one allowed")
        after = await owner.certificates.limits()
        data = await owner.certificates.enrollment_data()
        too_many_certificates = await _raw_enroll(owner, build_csr(data, generate_key()))
        await owner.certificates.revoke(first.serial_number)
        await owner.certificates.enroll("Second and last")
        too_many_enrollments = await _raw_enroll(owner, build_csr(data, generate_key()))
        await owner.testdata.reset_certificate_limits()
        reset = await owner.limits.subject()
    assert subject.enrollment is not None
    assert subject.enrollment.max_enrollments == 2
    assert subject.certificate is not None
    assert subject.certificate.max_certificates == 1
    assert (before.can_request, before.enrollment.remaining, before.certificate.remaining) == (True, 2, 1)
    assert (after.can_request, after.enrollment.remaining, after.certificate.remaining) == (False, 1, 0)
    assert too_many_certificates.has_code(25007)
    assert too_many_enrollments.has_code(25006)
    assert reset == defaults


@pytest.mark.ksef_simulator(processing_delay=30.0)
@pytest.mark.covers("get_certificates_enrollments_by_reference_number")
async def test_enrollment_status_is_100_until_processed(
    ksef_simulator: KsefSimulator, owner_cert: TestCertificate
) -> None:
    sim = ksef_simulator
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        data = await owner.certificates.enrollment_data()
        submitted = await owner.certificates.submit_enrollment(
            EnrollCertificateRequest(
                certificate_name="Slow one", certificate_type="Authentication", csr=build_csr(data, generate_key())
            )
        )
        pending = await owner.certificates.enrollment_status(submitted.reference_number)
        assert [c async for c in owner.certificates.query()] == []  # not issued yet
        sim.clock.advance(31)
        done = await owner.certificates.enrollment_status(submitted.reference_number)
        with pytest.raises(BadRequestError) as unknown:
            await owner.certificates.enrollment_status("20250101-EH-0000000000-0000000000-00")
        sim.clock.advance(30 * 24 * 3600)  # the status is kept for 30 days (the client logs in again meanwhile)
        with pytest.raises(GoneError):
            await owner.certificates.enrollment_status(submitted.reference_number)
    assert pending.status.code == 100
    assert pending.certificate_serial_number is None
    assert done.status.code == 200
    assert done.certificate_serial_number is not None
    assert unknown.value.has_code(25005)


@pytest.mark.covers("post_certificates_query", "post_certificates_retrieve")
async def test_query_pages_filters_and_retrieve(sim: KsefSimulator) -> None:
    # About 30 calls of the "other" group: at 30 per minute this test would wait a minute. The client reads the
    # raised limit from GET /rate-limits when it logs in.
    sim.rate_limiter.set_limits({"other": WindowLimits(100, 1000, 10000)})
    seal = generate_seal_certificate(organization_name="Firma Testowa", nip=DEFAULT_NIP, algorithm="ec")
    async with cert_client(sim, seal.cert_pem, seal.key_pem()) as owner:
        await owner.testdata.set_certificate_limits(
            SetSubjectLimitsRequest(
                enrollment=EnrollmentSubjectLimitsOverride(max_enrollments=20),
                certificate=CertificateSubjectLimitsOverride(max_certificates=20),
            )
        )
        data = await owner.certificates.enrollment_data()
        serials = []
        for i in range(11):
            kind = "Offline" if i % 4 == 0 else "Authentication"
            submitted = await owner.certificates.submit_enrollment(
                EnrollCertificateRequest(
                    certificate_name=f"Seal cert {i:02}", certificate_type=kind, csr=build_csr(data, generate_key())
                )
            )
            sim.clock.advance(1)  # distinct request dates: the listing is newest first
            serials.append(await owner.certificates.wait_for_enrollment(submitted.reference_number))
        every = [c async for c in owner.certificates.query(page_size=10)]
        pages = sim.counters.operations["post_certificates_query"]
        offline = [c async for c in owner.certificates.query(QueryCertificatesRequest(type="Offline"))]
        named = [c async for c in owner.certificates.query(QueryCertificatesRequest(name="cert 07"))]
        exact = [
            c async for c in owner.certificates.query(QueryCertificatesRequest(certificate_serial_number=serials[3]))
        ]
        retrieved = await owner.certificates.retrieve([serials[0], serials[5], "0000000000000001"])
        with pytest.raises(ConfigurationError):
            await owner.certificates.retrieve([*serials, "0000000000000001"])
    assert data.organization_identifier == f"VATPL-{DEFAULT_NIP}"
    assert data.given_name is None
    assert pages == 2
    assert [c.certificate_serial_number for c in every] == serials[::-1]
    assert {c.certificate_serial_number for c in offline} == {serials[0], serials[4], serials[8]}
    assert [c.name for c in named] == ["Seal cert 07"]
    assert [c.certificate_serial_number for c in exact] == [serials[3]]
    assert every[0].subject_identifier.type == "Nip"
    assert every[0].subject_identifier.value == DEFAULT_NIP
    assert [r.certificate_serial_number for r in retrieved] == [serials[0], serials[5]]
    assert (
        x509.load_der_x509_certificate(retrieved[1].certificate)
        .subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0]
        .value
        == f"VATPL-{DEFAULT_NIP}"
    )


def test_csr_subject_matches_the_official_sample() -> None:
    """The spec's sample CSR was built from its sample enrollment data: ours must carry the same subject."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    data_example = spec["paths"]["/certificates/enrollments/data"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["example"]
    csr_example = spec["paths"]["/certificates/enrollments"]["post"]["requestBody"]["content"]["application/json"][
        "example"
    ]["csr"]
    official = x509.load_der_x509_csr(base64.b64decode(csr_example))
    data = CertificateEnrollmentDataResponse(
        common_name=data_example["commonName"],
        country_name=data_example["countryName"],
        serial_number=data_example["serialNumber"],
        unique_identifier=data_example["uniqueIdentifier"],
        organization_name=data_example["organizationName"],
        organization_identifier=data_example["organizationIdentifier"],
    )
    ours = x509.load_der_x509_csr(build_csr(data, generate_key("rsa")))
    assert {(a.oid, a.value) for a in ours.subject} == {(a.oid, a.value) for a in official.subject}
    assert ours.is_signature_valid


def test_build_csr_refuses_keys_ksef_refuses() -> None:
    data = CertificateEnrollmentDataResponse(common_name="X", country_name="PL")
    with pytest.raises(ConfigurationError, match="2048"):
        build_csr(data, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(ConfigurationError, match="P-256"):
        build_csr(data, ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ConfigurationError, match=r"country_name"):
        build_csr(CertificateEnrollmentDataResponse(common_name="X", country_name="POL"), generate_key())
    with pytest.raises(ConfigurationError):
        generate_key("dsa")  # type: ignore[arg-type]


@pytest.mark.covers("post_certificates_enrollments", "get_certificates_enrollments_by_reference_number")
async def test_a_key_certified_for_another_subject_is_rejected(sim: KsefSimulator, owner_cert: TestCertificate) -> None:
    key = generate_key("ec")
    async with cert_client(sim, owner_cert.cert_pem, owner_cert.key_pem()) as owner:
        await owner.certificates.enroll("First holder", key=key)
    other_nip = "7762811692"
    seal = generate_seal_certificate(organization_name="Inna Firma", nip=other_nip, algorithm="ec")
    async with cert_client(sim, seal.cert_pem, seal.key_pem(), context=other_nip) as other:
        with pytest.raises(OperationFailedError) as rejected:
            await other.certificates.enroll("Same key elsewhere", key=key)
    assert rejected.value.code == 400
    assert rejected.value.details == ["Klucz publiczny został już certyfikowany przez inny podmiot."]
