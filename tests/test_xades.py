"""AuthTokenRequest building and XAdES signing/verification, against the official XSD, samples and signxml."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.signer import XMLSigner
from signxml.xades.xades import XAdESSigner

from ksef_async._schemas import schema_path
from ksef_async.core.codes import ExceptionCode
from ksef_async.errors import CryptoError, KsefError
from ksef_async.testing.certificates import (
    TestCertificate,
    generate_person_certificate,
    generate_seal_certificate,
)
from ksef_async.xml.auth_request import (
    AllowedIps,
    AuthRequestError,
    ContextIdentifier,
    build_auth_token_request,
    validate_auth_token_request,
)
from ksef_async.xml.xades import (
    DS_NS,
    XADES_NS,
    KeyCertSigner,
    SignatureError,
    identity_from_certificate,
    verify_auth_token_request,
)

CHALLENGE = "20250604-CR-461EA5B000-537A6BA15D-D7"
NIP = "5265877635"
PESEL = "88102341294"
NS = {"ds": DS_NS, "xades": XADES_NS}


@pytest.fixture(scope="module")
def person_rsa() -> TestCertificate:
    return generate_person_certificate(given_name="Jan", surname="Kowalski", pesel=PESEL, algorithm="rsa")


@pytest.fixture(scope="module")
def person_ec() -> TestCertificate:
    return generate_person_certificate(given_name="Anna", surname="Nowak", nip=NIP, algorithm="ec")


@pytest.fixture(scope="module")
def seal() -> TestCertificate:
    return generate_seal_certificate(organization_name="Firma Testowa sp. z o.o.", nip="7352765225")


def _request(subject: str = "certificateSubject", **kwargs: object) -> bytes:
    return build_auth_token_request(CHALLENGE, ContextIdentifier("Nip", NIP), subject, **kwargs)  # type: ignore[arg-type]


def _strict_21_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(schema_path("xsd", "auth", "schemat_auth_v2-1.xsd"))))


# --- AuthTokenRequest ------------------------------------------------------------------------------------------


def test_built_request_is_valid_against_the_official_21_xsd() -> None:
    schema = _strict_21_schema()
    for context in (ContextIdentifier("Nip", NIP), ContextIdentifier("InternalId", "6824515772-12343")):
        xml = build_auth_token_request(
            CHALLENGE,
            context,
            "certificateFingerprint",
            AllowedIps(("192.0.2.10",), ("10.0.0.1-10.0.0.20",), ("172.16.0.0/12", "10.1.0.0/16")),
            schema_version="2.1",
        )
        doc = etree.fromstring(xml)
        assert schema.validate(doc), schema.error_log
        names = [etree.QName(e).localname for e in doc.iter()]
        assert names == [
            "AuthTokenRequest",
            "Challenge",
            "ContextIdentifier",
            context.type,
            "SubjectIdentifierType",
            "AuthorizationPolicy",
            "AllowedIps",
            "Ip4Address",
            "Ip4Range",
            "Ip4Mask",
            "Ip4Mask",
        ]


def _canonical(xml: bytes) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.tostring(etree.fromstring(xml, parser), method="c14n")


@pytest.mark.parametrize(
    ("sample", "context", "subject"),
    [
        ("AuthTokenRequest-context-nip.xml", ContextIdentifier("Nip", NIP), "certificateSubject"),
        (
            "AuthTokenRequest-context-internal-id.xml",
            ContextIdentifier("InternalId", f"{NIP}-12345"),
            "certificateSubject",
        ),
        (
            "AuthTokenRequest-context-nip-vat-ue.xml",
            ContextIdentifier("NipVatUe", f"{NIP}-ATU12345678"),
            "certificateSubject",
        ),
        (
            "AuthTokenRequest-subject-certificate-fingerprint.xml",
            ContextIdentifier("Nip", NIP),
            "certificateFingerprint",
        ),
    ],
)
def test_built_request_equals_the_official_sample(
    samples_dir: Path, sample: str, context: ContextIdentifier, subject: str
) -> None:
    official = (samples_dir / "auth" / sample).read_bytes()
    built = build_auth_token_request(CHALLENGE, context, subject)  # type: ignore[arg-type]
    assert _canonical(built) == _canonical(official)
    assert validate_auth_token_request(official) == []


def test_nip_vat_ue_needs_the_documented_relaxation(samples_dir: Path) -> None:
    xml = build_auth_token_request(
        CHALLENGE, ContextIdentifier("NipVatUe", f"{NIP}-ATU12345678"), "certificateSubject", schema_version="2.1"
    )
    assert not _strict_21_schema().validate(etree.fromstring(xml))  # the XSD's literal "$" rejects every value
    assert validate_auth_token_request(xml) == []
    peppol = build_auth_token_request(CHALLENGE, ContextIdentifier("PeppolId", "PPL123456"), "certificateSubject")
    assert validate_auth_token_request(peppol) == []


def test_validation_reports_a_schema_violation() -> None:
    xml = _request().replace(b"certificateSubject", b"certificateSomething")
    problems = validate_auth_token_request(xml)
    assert problems
    assert "SubjectIdentifierType" in problems[0]


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (
            lambda: build_auth_token_request("2025-CR-X", ContextIdentifier("Nip", NIP), "certificateSubject"),
            "challenge",
        ),
        (lambda: ContextIdentifier("Nip", "0123456789"), "valid Nip"),
        (lambda: ContextIdentifier("InternalId", NIP), "valid InternalId"),
        (lambda: ContextIdentifier("Pesel", PESEL), "ContextIdentifier.type"),  # type: ignore[arg-type]
        (lambda: AllowedIps(ip4_addresses=tuple(f"10.0.0.{i}" for i in range(11))), "at most 10"),
        (lambda: AllowedIps(ip4_addresses=("256.1.1.1",)), "Ip4Address"),
        (lambda: AllowedIps(ip4_ranges=("10.0.0.9-10.0.0.1",)), "Ip4Range"),
        (lambda: AllowedIps(ip4_masks=("10.0.0.0/33",)), "Ip4Mask"),
        (lambda: AllowedIps(ip4_masks=("10.0.0.0/08",)), "Ip4Mask"),
        (lambda: _request(subject="certificateName"), "subject_identifier_type"),
    ],
)
def test_malformed_request_values_raise_a_typed_error(build: object, fragment: str) -> None:
    with pytest.raises(AuthRequestError, match=fragment) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, KsefError)


# --- signing and verification ----------------------------------------------------------------------------------


@pytest.mark.parametrize("holder", ["person_rsa", "person_ec", "seal"])
def test_signed_request_verifies(holder: str, request: pytest.FixtureRequest) -> None:
    cert: TestCertificate = request.getfixturevalue(holder)
    signer = KeyCertSigner.from_pem(cert.key_pem(), cert.cert_pem, clock=lambda: 1_800_000_000.0)
    ips = AllowedIps(ip4_addresses=("192.0.2.10",))
    signed = signer.sign(_request(allowed_ips=ips, schema_version="2.1"))

    result = verify_auth_token_request(signed)

    assert result.challenge == CHALLENGE
    assert result.context == ContextIdentifier("Nip", NIP)
    assert result.subject_identifier_type == "certificateSubject"
    assert result.allowed_ips == ips
    assert result.schema_version == "2.1"
    assert result.certificate == cert.certificate
    assert result.document_digest == base64.b64encode(hashlib.sha256(signed).digest()).decode()
    assert result.signing_time == dt.datetime.fromtimestamp(1_800_000_000 - 60, dt.UTC)
    expected = {"person_rsa": ("Pesel", PESEL), "person_ec": ("Nip", NIP), "seal": ("Nip", "7352765225")}[holder]
    assert (result.identity.type, result.identity.value) == expected


def test_signature_has_the_c_sharp_client_shape(person_rsa: TestCertificate, person_ec: TestCertificate) -> None:
    for cert, method in ((person_rsa, "rsa-sha256"), (person_ec, "ecdsa-sha256")):
        doc = etree.fromstring(KeyCertSigner(cert.key, cert.certificate).sign(_request()))
        signature = doc[-1]
        assert signature.tag == f"{{{DS_NS}}}Signature"
        assert signature.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm").endswith(method)  # type: ignore[union-attr]
        refs = signature.findall("ds:SignedInfo/ds:Reference", NS)
        assert len(refs) == 2
        assert refs[0].get("URI") == ""
        assert [t.get("Algorithm") for t in refs[0].findall("ds:Transforms/ds:Transform", NS)] == [
            "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
            "http://www.w3.org/2001/10/xml-exc-c14n#",
        ]
        assert refs[1].get("Type") == "http://uri.etsi.org/01903#SignedProperties"
        props_id = refs[1].get("URI", "")[1:]
        assert signature.find(f".//xades:SignedProperties[@Id='{props_id}']", NS) is not None
        for ref in refs:
            assert ref.find("ds:DigestMethod", NS).get("Algorithm") == "http://www.w3.org/2001/04/xmlenc#sha256"  # type: ignore[union-attr]
        der = cert.certificate.public_bytes(serialization.Encoding.DER)
        assert (
            signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
            == base64.b64encode(der).decode()
        )
        cert_digest = signature.findtext(
            ".//xades:SigningCertificate/xades:Cert/xades:CertDigest/ds:DigestValue", namespaces=NS
        )
        assert base64.b64decode(cert_digest or "") == cert.certificate.fingerprint(hashes.SHA256())
        serial = signature.findtext(".//xades:IssuerSerial/ds:X509SerialNumber", namespaces=NS)
        assert serial == str(cert.certificate.serial_number)


def test_ecdsa_signature_value_is_raw_r_s(person_ec: TestCertificate) -> None:
    doc = etree.fromstring(KeyCertSigner(person_ec.key, person_ec.certificate).sign(_request()))
    raw = base64.b64decode(doc.findtext(".//ds:SignatureValue", namespaces=NS) or "")
    assert len(raw) == 64  # P-256: 32-byte r || 32-byte s, not DER
    signed_info = etree.tostring(doc.find(".//ds:SignedInfo", NS), method="c14n", exclusive=True)  # type: ignore[arg-type]
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = person_ec.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, signed_info, ec.ECDSA(hashes.SHA256()))  # raises if not a valid r||s signature


def test_tampered_challenge_is_rejected(person_rsa: TestCertificate) -> None:
    signed = KeyCertSigner(person_rsa.key, person_rsa.certificate).sign(_request())
    tampered = signed.replace(CHALLENGE.encode(), b"20250604-CR-461EA5B000-537A6BA15D-D8")
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(tampered)
    assert info.value.code == 9105


def test_tampered_signed_properties_are_rejected(person_rsa: TestCertificate) -> None:
    signed = KeyCertSigner(person_rsa.key, person_rsa.certificate, clock=lambda: 1_800_000_000.0).sign(_request())
    tampered = signed.replace(b"2027-01-15T07:59:00Z", b"2027-01-15T07:59:01Z")
    assert tampered != signed
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(tampered)
    assert info.value.code == 9105


def test_certificate_swapped_in_key_info_is_rejected(person_rsa: TestCertificate, seal: TestCertificate) -> None:
    signed = KeyCertSigner(person_rsa.key, person_rsa.certificate).sign(_request())
    original = base64.b64encode(person_rsa.certificate.public_bytes(serialization.Encoding.DER))
    other = base64.b64encode(seal.certificate.public_bytes(serialization.Encoding.DER))
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(signed.replace(original, other))
    assert info.value.code == 9105


def test_signing_certificate_digest_must_match(person_rsa: TestCertificate, seal: TestCertificate) -> None:
    # Signed properties naming another certificate: the signature is re-made so only the cert digest is wrong.
    doc = etree.fromstring(_request())
    signed = etree.fromstring(KeyCertSigner(person_rsa.key, person_rsa.certificate).sign(etree.tostring(doc)))
    digest = signed.find(".//xades:CertDigest/ds:DigestValue", NS)
    assert digest is not None
    digest.text = base64.b64encode(seal.certificate.fingerprint(hashes.SHA256())).decode()
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(etree.tostring(signed))
    assert info.value.code == 9105


def test_unsigned_and_doubly_signed_documents_are_rejected(person_rsa: TestCertificate, seal: TestCertificate) -> None:
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(_request())
    assert info.value.code == 9102
    once = etree.fromstring(KeyCertSigner(person_rsa.key, person_rsa.certificate).sign(_request()))
    other = etree.fromstring(KeyCertSigner(seal.key, seal.certificate).sign(_request()))
    once.append(other[-1])
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(etree.tostring(once))
    assert info.value.code == 9103


def test_detached_signatures_are_rejected(person_rsa: TestCertificate) -> None:
    detached = XMLSigner(method=SignatureConstructionMethod.detached).sign(
        etree.fromstring(_request()), key=person_rsa.key, cert=[person_rsa.certificate]
    )
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(etree.tostring(detached))
    assert info.value.code == 9101
    # A signature inside the document that signs only one element does not cover the request either.
    doc = etree.fromstring(_request())
    doc[0].set("Id", "challenge")
    partial = XAdESSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
        doc, key=person_rsa.key, cert=[person_rsa.certificate], reference_uri="#challenge"
    )
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(etree.tostring(partial))
    assert info.value.code == 9101


def test_enveloping_signature_is_accepted(person_rsa: TestCertificate) -> None:
    signed = XAdESSigner(method=SignatureConstructionMethod.enveloping).sign(
        etree.fromstring(_request(allowed_ips=AllowedIps(ip4_masks=("10.0.0.0/8",)))),
        key=person_rsa.key,
        cert=[person_rsa.certificate],
    )
    data = etree.tostring(signed)
    assert etree.QName(signed).localname == "Signature"
    result = verify_auth_token_request(data)
    assert result.challenge == CHALLENGE
    assert result.allowed_ips == AllowedIps(ip4_masks=("10.0.0.0/8",))
    assert result.identity.value == PESEL
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(data.replace(NIP.encode(), b"7352765225"))
    assert info.value.code == 9105


def test_signxml_xades_signature_is_accepted(person_ec: TestCertificate) -> None:
    # Another producer's shape (three references, SigningCertificateV2, KeyValue) must verify as well.
    # (signxml's own default c14n 1.1: with exc-c14n its Transform-less SignedProperties reference does not verify.)
    signed = XAdESSigner(signature_algorithm="ecdsa-sha256").sign(
        etree.fromstring(_request("certificateFingerprint")), key=person_ec.key, cert=[person_ec.certificate]
    )
    result = verify_auth_token_request(etree.tostring(signed))
    assert result.identity.type == "Fingerprint"
    assert result.identity.value == person_ec.certificate.fingerprint(hashes.SHA256()).hex().upper()


def _signxml_signed_with_key_value(
    signer: TestCertificate, certificate: TestCertificate, key_value: ec.EllipticCurvePublicKey
) -> bytes:
    # KeyInfo holding a KeyValue and the certificate's X509Data, covered by the signature as signxml's own is.
    dsig11 = "http://www.w3.org/2009/xmldsig11#"
    key_info = etree.Element(f"{{{DS_NS}}}KeyInfo", nsmap={"ds": DS_NS})
    ec_key_value = etree.SubElement(
        etree.SubElement(key_info, f"{{{DS_NS}}}KeyValue"), f"{{{dsig11}}}ECKeyValue", nsmap={"dsig11": dsig11}
    )
    etree.SubElement(ec_key_value, f"{{{dsig11}}}NamedCurve", URI="urn:oid:1.2.840.10045.3.1.7")
    point = key_value.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    etree.SubElement(ec_key_value, f"{{{dsig11}}}PublicKey").text = base64.b64encode(point).decode()
    der = certificate.certificate.public_bytes(serialization.Encoding.DER)
    etree.SubElement(
        etree.SubElement(key_info, f"{{{DS_NS}}}X509Data"), f"{{{DS_NS}}}X509Certificate"
    ).text = base64.b64encode(der).decode()
    signed = XAdESSigner(signature_algorithm="ecdsa-sha256").sign(
        etree.fromstring(_request("certificateFingerprint")),
        key=signer.key,
        cert=[certificate.certificate],
        key_info=key_info,
    )
    return etree.tostring(signed)


def test_key_value_beside_the_certificate_is_not_what_is_trusted(person_ec: TestCertificate) -> None:
    # signxml 5.1 writes a wrong ECKeyValue for 1 EC key in ~128 (a leading zero byte dropped). The signature is
    # still checked against the certificate, whatever the KeyValue says, and only against the certificate.
    other = generate_person_certificate(given_name="Ewa", surname="Lis", nip="7352765225", algorithm="ec")
    accepted = verify_auth_token_request(
        _signxml_signed_with_key_value(person_ec, person_ec, other.key.public_key())  # type: ignore[arg-type]
    )
    assert accepted.identity.value == person_ec.certificate.fingerprint(hashes.SHA256()).hex().upper()
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(
            _signxml_signed_with_key_value(other, person_ec, other.key.public_key())  # type: ignore[arg-type]
        )
    assert info.value.code == 9105


def test_expired_certificate_is_rejected() -> None:
    old = generate_person_certificate(
        given_name="Jan", surname="Kowalski", nip=NIP, not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), days=30
    )
    signed = KeyCertSigner(old.key, old.certificate).sign(_request())
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(signed)
    assert info.value.code == ExceptionCode.BAD_CERTIFICATE
    accepted = verify_auth_token_request(signed, now=dt.datetime(2020, 1, 10, tzinfo=dt.UTC))
    assert accepted.identity.value == NIP


def test_signed_content_must_match_the_xsd(person_rsa: TestCertificate) -> None:
    bad = _request().replace(b"certificateSubject", b"certificateName")
    signed = KeyCertSigner(person_rsa.key, person_rsa.certificate).sign(bad)
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(signed)
    assert info.value.code == ExceptionCode.XSD_MISMATCH


def test_malformed_xml_is_rejected() -> None:
    with pytest.raises(SignatureError) as info:
        verify_auth_token_request(b"<AuthTokenRequest><unclosed></AuthTokenRequest>")
    assert info.value.code == 9101


# --- identity --------------------------------------------------------------------------------------------------


def test_identity_extraction(person_rsa: TestCertificate, person_ec: TestCertificate, seal: TestCertificate) -> None:
    assert identity_from_certificate(person_rsa.certificate, "certificateSubject").value == PESEL
    assert identity_from_certificate(person_ec.certificate, "certificateSubject").type == "Nip"
    seal_id = identity_from_certificate(seal.certificate, "certificateSubject")
    assert (seal_id.type, seal_id.value) == ("Nip", "7352765225")
    fingerprint = identity_from_certificate(seal.certificate, "certificateFingerprint")
    assert fingerprint.type == "Fingerprint"
    assert fingerprint.value == seal.fingerprint
    assert len(fingerprint.value) == 64
    assert fingerprint.value == fingerprint.value.upper()


def test_loose_serial_number_forms_follow_the_documented_patterns() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def cert(*attributes: x509.NameAttribute[str]) -> x509.Certificate:
        name = x509.Name(list(attributes))
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )

    pesel = cert(x509.NameAttribute(NameOID.SERIAL_NUMBER, f"PESEL: {PESEL}"))
    assert identity_from_certificate(pesel, "certificateSubject").value == PESEL
    nip = cert(x509.NameAttribute(NameOID.SERIAL_NUMBER, f"NIP-{NIP}"))
    assert identity_from_certificate(nip, "certificateSubject").value == NIP
    nothing = cert(x509.NameAttribute(NameOID.COMMON_NAME, "Nobody"))
    with pytest.raises(SignatureError) as info:
        identity_from_certificate(nothing, "certificateSubject")
    assert info.value.code == ExceptionCode.BAD_CERTIFICATE
    assert identity_from_certificate(nothing, "certificateFingerprint").type == "Fingerprint"


# --- key loading -----------------------------------------------------------------------------------------------


def test_pkcs12_and_encrypted_pem_loading(person_ec: TestCertificate) -> None:
    p12 = person_ec.pkcs12(b"s3cret-p12")
    signer = KeyCertSigner.from_pkcs12(p12, b"s3cret-p12")
    assert verify_auth_token_request(signer.sign(_request())).certificate == person_ec.certificate
    with pytest.raises(CryptoError) as info:
        KeyCertSigner.from_pkcs12(p12, b"wrong-password")
    assert "wrong-password" not in str(info.value)
    assert "s3cret" not in str(info.value)

    pem = person_ec.key_pem(b"pem-pass")
    assert b"ENCRYPTED" in pem
    assert KeyCertSigner.from_pem(pem, person_ec.cert_pem, b"pem-pass").certificate == person_ec.certificate
    with pytest.raises(CryptoError):
        KeyCertSigner.from_pem(pem, person_ec.cert_pem, b"nope")
    with pytest.raises(CryptoError):
        KeyCertSigner.from_pem(b"not a key", person_ec.cert_pem)


def test_key_and_certificate_must_match(person_rsa: TestCertificate, seal: TestCertificate) -> None:
    with pytest.raises(CryptoError, match="does not match"):
        KeyCertSigner(person_rsa.key, seal.certificate)


def test_short_rsa_keys_are_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CryptoError, match="2048"):
        KeyCertSigner(key, cert)


def test_repr_never_shows_the_private_key(person_rsa: TestCertificate) -> None:
    signer = KeyCertSigner(person_rsa.key, person_rsa.certificate)
    assert isinstance(person_rsa.key, rsa.RSAPrivateKey)
    numbers = person_rsa.key.private_numbers()
    for text in (repr(signer), repr(person_rsa), str(signer)):
        assert "key=" not in text
        assert "PRIVATE" not in text
        assert str(numbers.d)[:20] not in text
        assert format(numbers.d, "x")[:20] not in text
