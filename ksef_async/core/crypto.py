"""KSeF cryptography without I/O: streaming AES-256-CBC/PKCS#7, RSA-OAEP wrapping, SHA-256 Base64, MF key choice."""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Iterable, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ksef_async.core.digest import b64, sha256_b64
from ksef_async.errors import CryptoError

__all__ = [
    "AES_BLOCK",
    "KEY_USAGE_SYMMETRIC",
    "KEY_USAGE_TOKEN",
    "AesCbcDecryptor",
    "AesCbcEncryptor",
    "MfPublicKey",
    "SessionKey",
    "b64",
    "b64decode",
    "decrypt_cbc",
    "encrypt_cbc",
    "encrypt_ksef_token",
    "encrypted_size",
    "rsa_oaep_decrypt",
    "rsa_oaep_encrypt",
    "select_public_key",
    "sha256_b64",
]

AES_BLOCK = 16
KEY_USAGE_TOKEN = "KsefTokenEncryption"  # noqa: S105 - a key usage name, not a secret
KEY_USAGE_SYMMETRIC = "SymmetricKeyEncryption"

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def b64decode(text: str, *, field: str = "value") -> bytes:
    """Decode standard Base64 strictly; raise `CryptoError` naming ``field`` when it is not Base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        msg = f"{field} is not valid Base64"
        raise CryptoError(msg) from exc


def encrypted_size(plain_size: int) -> int:
    """Ciphertext length of AES-CBC with PKCS#7 padding: 16 * (n // 16 + 1)."""
    return AES_BLOCK * (plain_size // AES_BLOCK + 1)


@attrs.frozen(repr=False)
class SessionKey:
    """A session's AES-256 key and IV: one pair per session, used for every invoice or part of it."""

    key: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    iv: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))

    def __attrs_post_init__(self) -> None:
        if len(self.key) != 32 or len(self.iv) != AES_BLOCK:  # noqa: PLR2004
            msg = "a session key is 32 bytes and its IV 16 bytes"
            raise CryptoError(msg)

    @classmethod
    def generate(cls) -> SessionKey:
        """Return a fresh random key and IV."""
        return cls(os.urandom(32), os.urandom(AES_BLOCK))

    def __repr__(self) -> str:
        return "SessionKey(<redacted>)"

    def encryptor(self) -> AesCbcEncryptor:
        """Return a streaming encryptor under this key and IV."""
        return AesCbcEncryptor(self.key, self.iv)

    def decryptor(self) -> AesCbcDecryptor:
        """Return a streaming decryptor under this key and IV."""
        return AesCbcDecryptor(self.key, self.iv)

    def wrap(self, public_key: rsa.RSAPublicKey) -> bytes:
        """RSA-OAEP-encrypt the AES key for ``encryption.encryptedSymmetricKey``."""
        return rsa_oaep_encrypt(public_key, self.key)


class AesCbcEncryptor:
    """Streaming AES-256-CBC encryptor with PKCS#7 padding.

    Feed plaintext in chunks of any size with `update_into` (into a reused buffer, the fast path) or `update`;
    `finalize` returns the last block(s) with the padding. The padding is added by encrypting the pad bytes
    directly, so plaintext is never copied through a padder.
    """

    __slots__ = ("_ctx", "_done", "_total")

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._ctx = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        self._total = 0
        self._done = False

    @staticmethod
    def buffer_size(chunk_size: int) -> int:
        """Size of an output buffer that fits `update_into` for inputs of up to ``chunk_size`` bytes."""
        return chunk_size + AES_BLOCK - 1

    def update_into(self, data: bytes | bytearray | memoryview, out: bytearray | memoryview) -> int:
        """Encrypt ``data`` into ``out`` (at least ``len(data) + 15`` bytes); return the bytes written."""
        self._total += len(data)
        return self._ctx.update_into(data, out)

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt ``data`` and return the complete blocks produced so far."""
        self._total += len(data)
        return self._ctx.update(data)

    def finalize(self) -> bytes:
        """Append the PKCS#7 padding and return the final ciphertext bytes."""
        if self._done:
            msg = "encryptor already finalized"
            raise CryptoError(msg)
        self._done = True
        pad = AES_BLOCK - self._total % AES_BLOCK
        return self._ctx.update(bytes([pad]) * pad) + self._ctx.finalize()


class AesCbcDecryptor:
    """Streaming AES-256-CBC decryptor that removes PKCS#7 padding at the end.

    The last decrypted block is held back until `finalize`, where its padding is checked and removed.
    """

    __slots__ = ("_ctx", "_done", "_pending")

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._ctx = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        self._pending = b""
        self._done = False

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Decrypt ``data``; return plaintext except the last complete block (kept for the padding check)."""
        out = self._pending + self._ctx.update(data)
        if len(out) <= AES_BLOCK:
            self._pending = out
            return b""
        self._pending = out[-AES_BLOCK:]
        return out[:-AES_BLOCK]

    def finalize(self) -> bytes:
        """Check and strip the padding; return the last plaintext bytes."""
        if self._done:
            msg = "decryptor already finalized"
            raise CryptoError(msg)
        self._done = True
        try:
            tail = self._pending + self._ctx.finalize()
        except ValueError as exc:
            msg = "ciphertext length is not a multiple of the AES block"
            raise CryptoError(msg) from exc
        if len(tail) != AES_BLOCK:
            msg = "ciphertext is empty or truncated"
            raise CryptoError(msg)
        pad = tail[-1]
        if not 1 <= pad <= AES_BLOCK or tail[-pad:] != bytes([pad]) * pad:
            msg = "bad PKCS#7 padding (wrong key, IV or truncated ciphertext)"
            raise CryptoError(msg)
        return tail[:-pad]


def encrypt_cbc(key: SessionKey, data: bytes | bytearray | memoryview) -> bytes:
    """One-shot AES-256-CBC/PKCS#7 encryption (for single invoices)."""
    enc = key.encryptor()
    return enc.update(data) + enc.finalize()


def decrypt_cbc(key: SessionKey, data: bytes | bytearray | memoryview) -> bytes:
    """One-shot AES-256-CBC/PKCS#7 decryption."""
    dec = key.decryptor()
    return dec.update(data) + dec.finalize()


def rsa_oaep_encrypt(public_key: rsa.RSAPublicKey, data: bytes) -> bytes:
    """RSAES-OAEP with SHA-256, MGF1-SHA-256 and an empty label, as KSeF requires."""
    return public_key.encrypt(data, _OAEP)


def rsa_oaep_decrypt(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """Inverse of `rsa_oaep_encrypt` (used by the simulator); raise `CryptoError` on failure."""
    try:
        return private_key.decrypt(data, _OAEP)
    except ValueError as exc:
        msg = "RSA-OAEP decryption failed"
        raise CryptoError(msg) from exc


def encrypt_ksef_token(public_key: rsa.RSAPublicKey, token: str, timestamp_ms: int) -> str:
    """Return ``encryptedToken``: Base64(RSA-OAEP(UTF-8 ``"{token}|{timestampMs}"``))."""
    return b64(rsa_oaep_encrypt(public_key, f"{token}|{timestamp_ms}".encode()))


@attrs.frozen
class MfPublicKey:
    """One Ministry of Finance public-key certificate (``PublicKeyCertificate`` in the spec)."""

    certificate_der: bytes = attrs.field(repr=False)
    valid_from: dt.datetime
    valid_to: dt.datetime
    usage: tuple[str, ...]
    public_key_id: str | None = None

    @classmethod
    def from_api(
        cls,
        certificate: str | bytes,
        valid_from: dt.datetime,
        valid_to: dt.datetime,
        usage: Iterable[str],
        public_key_id: str | None = None,
    ) -> MfPublicKey:
        """Build from the API fields; ``certificate`` is Base64 DER text or raw DER bytes."""
        der = certificate if isinstance(certificate, bytes) else b64decode(certificate, field="certificate")
        return cls(der, valid_from, valid_to, tuple(str(u) for u in usage), public_key_id)

    def rsa_public_key(self) -> rsa.RSAPublicKey:
        """Return the certificate's RSA public key."""
        try:
            key = x509.load_der_x509_certificate(self.certificate_der).public_key()
        except ValueError as exc:
            msg = "MF public-key certificate is not valid DER"
            raise CryptoError(msg) from exc
        if not isinstance(key, rsa.RSAPublicKey):
            msg = f"MF public key is {type(key).__name__}, expected RSA"
            raise CryptoError(msg)
        return key


def select_public_key(keys: Sequence[MfPublicKey], usage: str, now: dt.datetime) -> MfPublicKey:
    """Choose the key for ``usage``: valid now (validFrom <= now < validTo), latest ``validFrom`` wins.

    Raises:
        CryptoError: No certificate has that usage and is valid now.
    """
    candidates = [k for k in keys if usage in k.usage and k.valid_from <= now < k.valid_to]
    if not candidates:
        msg = f"no MF public-key certificate with usage {usage} is valid at {now.isoformat()}"
        raise CryptoError(msg)
    return max(candidates, key=lambda k: k.valid_from)
