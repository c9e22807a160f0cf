"""Self-signed test certificates shaped like KSeF authentication certificates (person or seal); no I/O."""

from __future__ import annotations

import datetime as dt

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from ksef_async.core.certs import KeyAlgorithm, PrivateKey, certificate_fingerprint, signing_certificate
from ksef_async.core.csr import generate_key

__all__ = [
    "TestCertificate",
    "generate_person_certificate",
    "generate_seal_certificate",
]


@attrs.frozen
class TestCertificate:
    """A generated key pair and its self-signed certificate.

    Attributes:
        key: The private key (never shown in a repr).
        certificate: The self-signed certificate.
    """

    __test__ = False  # not a pytest test class despite the name

    key: PrivateKey = attrs.field(repr=False)
    certificate: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key in PKCS#8 PEM, encrypted with ``password`` when given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def pkcs12(self, password: bytes | None = None, *, name: bytes = b"ksef-test") -> bytes:
        """The key and certificate as a PKCS#12 (.p12/.pfx) container, encrypted with ``password`` when given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(name, self.key, self.certificate, None, encryption)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate DER, upper-case hex (the ``certificateFingerprint`` identity)."""
        return certificate_fingerprint(self.certificate)


def _digits(value: str, count: int, field: str) -> str:
    if not (len(value) == count and value.isdigit()):
        msg = f"{field} must be {count} digits, got {value!r}"
        raise ValueError(msg)
    return value


def _self_signed(
    name: x509.Name, algorithm: KeyAlgorithm, not_before: dt.datetime | None, days: int
) -> TestCertificate:
    key = generate_key(algorithm)
    start = (not_before or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)  # tolerate small clock skew
    cert = signing_certificate(
        subject=name,
        public_key=key.public_key(),
        issuer=name,
        issuer_key=key,
        serial=x509.random_serial_number(),
        not_before=start,
        not_after=start + dt.timedelta(days=days),
        digital_signature=True,
        content_commitment=True,
    )
    return TestCertificate(key=key, certificate=cert)


def generate_person_certificate(
    *,
    given_name: str,
    surname: str,
    nip: str | None = None,
    pesel: str | None = None,
    common_name: str | None = None,
    algorithm: KeyAlgorithm = "rsa",
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> TestCertificate:
    """Generate a self-signed certificate of a natural person, as KSeF TEST accepts for XAdES login.

    The subject holds givenName, surname, serialNumber (``TINPL-<NIP>`` or ``PNOPL-<PESEL>``), commonName and
    countryName PL: the attributes KSeF requires of a person's certificate.

    Args:
        given_name: The person's first name.
        surname: The person's last name.
        nip: The person's NIP (10 digits); exactly one of ``nip`` and ``pesel`` is required.
        pesel: The person's PESEL (11 digits).
        common_name: The subject commonName; defaults to ``"<given_name> <surname>"``.
        algorithm: ``"rsa"`` (RSA-2048) or ``"ec"`` (P-256).
        not_before: Start of validity (UTC); defaults to now minus 5 minutes.
        days: Validity length in days.

    Returns:
        The key and certificate.

    Raises:
        ValueError: Neither or both of ``nip``/``pesel`` given, or an identifier of the wrong shape.
        ConfigurationError: Another ``algorithm``.
    """
    if (nip is None) == (pesel is None):
        msg = "exactly one of nip and pesel is required"
        raise ValueError(msg)
    serial = f"TINPL-{_digits(nip, 10, 'nip')}" if nip is not None else f"PNOPL-{_digits(pesel or '', 11, 'pesel')}"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "PL"),
            x509.NameAttribute(NameOID.GIVEN_NAME, given_name),
            x509.NameAttribute(NameOID.SURNAME, surname),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"{given_name} {surname}"),
        ]
    )
    return _self_signed(name, algorithm, not_before, days)


def generate_seal_certificate(
    *,
    organization_name: str,
    nip: str,
    common_name: str | None = None,
    algorithm: KeyAlgorithm = "rsa",
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> TestCertificate:
    """Generate a self-signed certificate of an organization's seal, as KSeF TEST accepts for XAdES login.

    The subject holds organizationName, organizationIdentifier ``VATPL-<NIP>``, commonName and countryName PL, and
    no givenName/surname (KSeF forbids them on seals).

    Args:
        organization_name: The organization's name.
        nip: The organization's NIP (10 digits).
        common_name: The subject commonName; defaults to ``organization_name``.
        algorithm: ``"rsa"`` (RSA-2048) or ``"ec"`` (P-256).
        not_before: Start of validity (UTC); defaults to now minus 5 minutes.
        days: Validity length in days.

    Returns:
        The key and certificate.

    Raises:
        ValueError: ``nip`` is not 10 digits.
        ConfigurationError: Another ``algorithm``.
    """
    _digits(nip, 10, "nip")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "PL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization_name),
            x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"VATPL-{nip}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name or organization_name),
        ]
    )
    return _self_signed(name, algorithm, not_before, days)
