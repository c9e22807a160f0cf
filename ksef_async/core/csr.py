"""PKCS#10 requests for KSeF certificates, built from ``GET /certificates/enrollments/data`` (pure; no I/O).

KSeF compares the CSR subject with the enrollment data attribute by attribute (25003 on a mismatch), accepts RSA-2048
or EC P-256 keys (25010 otherwise) and signatures with SHA-1/256/384/512 (25011 otherwise): the request must carry
exactly the attributes the enrollment data lists, no more, no fewer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from ksef_async.core.certs import KeyAlgorithm, PrivateKey
from ksef_async.errors import ConfigurationError

__all__ = [
    "ENROLLMENT_ATTRIBUTES",
    "EnrollmentData",
    "build_csr",
    "enrollment_subject",
    "generate_key",
]

_RSA_BITS = 2048

ENROLLMENT_ATTRIBUTES: tuple[tuple[str, x509.ObjectIdentifier, _ASN1Type], ...] = (
    ("common_name", NameOID.COMMON_NAME, _ASN1Type.UTF8String),
    ("given_name", NameOID.GIVEN_NAME, _ASN1Type.UTF8String),
    ("surname", NameOID.SURNAME, _ASN1Type.UTF8String),
    ("organization_name", NameOID.ORGANIZATION_NAME, _ASN1Type.UTF8String),
    ("organization_identifier", NameOID.ORGANIZATION_IDENTIFIER, _ASN1Type.UTF8String),
    ("country_name", NameOID.COUNTRY_NAME, _ASN1Type.PrintableString),
    ("serial_number", NameOID.SERIAL_NUMBER, _ASN1Type.PrintableString),
    ("unique_identifier", NameOID.X500_UNIQUE_IDENTIFIER, _ASN1Type.UTF8String),
)
"""Enrollment-data field (model attribute name) -> subject attribute OID and string type, in subject order.

The string types follow the official sample CSR of ``POST /certificates/enrollments`` (uniqueIdentifier is OID
2.5.4.45 as a UTF8String there, not the BIT STRING of X.520)."""


class EnrollmentData(Protocol):
    """The subject attributes of ``GET /certificates/enrollments/data`` (schema ``CertificateEnrollmentDataResponse``).

    `ksef_async.models.CertificateEnrollmentDataResponse` is one; core does not import the models layer above it.
    """

    @property
    def common_name(self) -> str | None:
        """``commonName``."""

    @property
    def given_name(self) -> str | None:
        """``givenName``."""

    @property
    def surname(self) -> str | None:
        """``surname``."""

    @property
    def organization_name(self) -> str | None:
        """``organizationName``."""

    @property
    def organization_identifier(self) -> str | None:
        """``organizationIdentifier``."""

    @property
    def country_name(self) -> str | None:
        """``countryName``."""

    @property
    def serial_number(self) -> str | None:
        """``serialNumber``."""

    @property
    def unique_identifier(self) -> str | None:
        """``uniqueIdentifier``."""


def generate_key(algorithm: KeyAlgorithm = "ec") -> PrivateKey:
    """A new private key KSeF accepts for a certificate: ``"ec"`` (P-256, KSeF's recommendation) or ``"rsa"`` (2048).

    Raises:
        ConfigurationError: Another algorithm.
    """
    factories: dict[str, Callable[[], PrivateKey]] = {
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS),
        "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
    }
    factory = factories.get(algorithm)
    if factory is None:
        raise ConfigurationError(f"key algorithm must be 'rsa' or 'ec', not {algorithm!r}")
    return factory()


def enrollment_subject(data: EnrollmentData) -> x509.Name:
    """The CSR subject: every attribute the enrollment data carries (none of those it leaves empty).

    Raises:
        ConfigurationError: ``countryName`` is not a two-letter code (a PrintableString of length 2).
    """
    attributes = []
    for field, oid, kind in ENROLLMENT_ATTRIBUTES:
        value = getattr(data, field)
        if value is None or value == "":
            continue
        try:
            attributes.append(x509.NameAttribute(oid, value, _type=kind))
        except ValueError as exc:
            raise ConfigurationError(f"enrollment data {field}: {exc}") from None
    return x509.Name(attributes)


def build_csr(data: EnrollmentData, key: PrivateKey) -> bytes:
    """A DER PKCS#10 request for ``key`` whose subject is exactly the enrollment data (the ``csr`` of the request).

    RSA keys sign with SHA-256 and PKCS#1 v1.5, EC keys with ECDSA SHA-256 (both accepted by KSeF).

    Raises:
        ConfigurationError: A key KSeF would refuse (not RSA-2048 nor EC P-256), or unusable enrollment data.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size != _RSA_BITS:
            raise ConfigurationError(f"KSeF accepts RSA keys of {_RSA_BITS} bits, not {key.key_size}")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigurationError(f"KSeF accepts EC keys on P-256 (secp256r1), not {key.curve.name}")
    else:
        raise ConfigurationError(f"KSeF accepts RSA-2048 or EC P-256 keys, not {type(key).__name__}")
    request = x509.CertificateSigningRequestBuilder().subject_name(enrollment_subject(data)).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.DER)
