"""Certificate primitives with no I/O: the key types KSeF accepts, fingerprints, signing an end-entity certificate.

Self-signed test certificates (`TestCertificate`, `generate_person_certificate`, `generate_seal_certificate`) live in
`ksef_async.testing.certificates`.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, CertificatePublicKeyTypes

__all__ = [
    "KeyAlgorithm",
    "PrivateKey",
    "certificate_fingerprint",
    "signing_certificate",
]

KeyAlgorithm = Literal["rsa", "ec"]
"""``"rsa"`` is RSA-2048, ``"ec"`` is ECDSA on P-256: the minimum sizes KSeF accepts for XAdES."""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """Return the SHA-256 fingerprint of ``certificate`` (DER) as 64 upper-case hex digits, KSeF's form."""
    return certificate.fingerprint(hashes.SHA256()).hex().upper()


def signing_certificate(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    digital_signature: bool,
    content_commitment: bool,
) -> x509.Certificate:
    """Sign (SHA-256) an end-entity certificate whose only key usages are signing ones, both marked critical.

    ``digital_signature`` is what a login (XAdES) signature needs, ``content_commitment`` (non-repudiation) what
    KSeF's offline certificates carry; ``issuer == subject`` with the subject's own key makes it self-signed.
    """
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
