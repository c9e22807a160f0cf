"""MF-style RSA key pairs with self-signed certificates, as served by ``GET /security/public-key-certificates``."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, KEY_USAGE_TOKEN, b64
from ksef_async.testing.simulator.state import iso

__all__ = ["MfKey", "MfKeyring"]


@dataclass(eq=False)
class MfKey:
    """One MF key pair: its usage, private key and self-signed certificate."""

    usage: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    public_key_id: str
    """Base64 SHA-256 of the SubjectPublicKeyInfo DER (the spec's ``publicKeyId``)."""
    certificate_id: str
    """Base64 SHA-256 of the certificate DER (the spec's ``certificateId``)."""

    @classmethod
    def generate(cls, usage: str, *, bits: int, now: dt.datetime) -> MfKey:
        """Generate a key of ``bits`` bits and a certificate valid from a day before ``now`` for two years."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "Ministerstwo Finansów"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"KSeF simulator {usage}"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, "PL"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=730))
            .sign(key, hashes.SHA256())
        )
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(usage, key, cert, b64(hashlib.sha256(spki).digest()), b64(hashlib.sha256(der).digest()))

    def to_json(self) -> dict[str, Any]:
        """The spec's ``PublicKeyCertificate`` object."""
        return {
            "certificate": b64(self.certificate.public_bytes(serialization.Encoding.DER)),
            "certificateId": self.certificate_id,
            "publicKeyId": self.public_key_id,
            "validFrom": iso(self.certificate.not_valid_before_utc),
            "validTo": iso(self.certificate.not_valid_after_utc),
            "usage": [self.usage],
        }


class MfKeyring:
    """The simulator's MF keys: one per usage (token encryption, symmetric key encryption), distinct as on KSeF."""

    def __init__(self, *, bits: int, now: dt.datetime) -> None:
        self.keys: list[MfKey] = [
            MfKey.generate(KEY_USAGE_TOKEN, bits=bits, now=now),
            MfKey.generate(KEY_USAGE_SYMMETRIC, bits=bits, now=now),
        ]

    def current(self, usage: str) -> MfKey:
        """The key in force for ``usage`` (the last one added)."""
        return [k for k in self.keys if k.usage == usage][-1]

    def candidates(self, usage: str, public_key_id: str | None) -> Sequence[MfKey] | None:
        """Keys to try for ``usage``; ``None`` when ``public_key_id`` names no key of that usage (error 21470).

        Without a ``public_key_id`` every key of the usage is a candidate.
        """
        keys = [k for k in self.keys if k.usage == usage]
        if public_key_id is None:
            return keys
        named = [k for k in keys if k.public_key_id == public_key_id]
        return named or None

    def to_json(self) -> list[dict[str, Any]]:
        """The body of ``GET /security/public-key-certificates``."""
        return [k.to_json() for k in self.keys]
