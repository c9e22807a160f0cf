"""KSeF verification links for QR codes: KOD I (invoice) and KOD II (offline certificate), built, signed and verified.

KOD I: ``{host}/invoice/{sellerNip}/{P_1 as DD-MM-YYYY}/{base64url(SHA-256(file)) without padding}``.

KOD II: ``{host}/certificate/{ctxType}/{ctxValue}/{sellerNip}/{certSerial}/{hash}/{signature}``. The signed data is
the link without ``https://`` and without the signature segment (no trailing ``/``), as UTF-8; the signature is
RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt, RSA >= 2048) or ECDSA P-256/SHA-256 as IEEE P1363 ``r||s``.

Certificate type: KSeF issues ``Authentication`` certificates with keyUsage digitalSignature and ``Offline``
certificates with keyUsage nonRepudiation (docs ``certyfikaty-KSeF.md``); only the latter may sign KOD II, and
`kod_ii_link` refuses any other. The official KOD II example was signed with a certificate that carries
digitalSignature only, so `verify_kod_ii` reports the type instead of refusing unless asked to
(``require_offline=True``).

Certificates: the official example certificate repeats a NULL parameter after ``ecdsa-with-SHA512`` in its
signature AlgorithmIdentifiers, which RFC 5758 §3.2 forbids: recent ``cryptography`` versions warn about it, and
the one installed here (50.x) refuses to parse it. `load_certificate` therefore removes that one NULL from both
AlgorithmIdentifiers before parsing (other certificates pass through byte for byte); the subject key, serial and
extensions are untouched. The issuer's signature over the
rewritten TBS no longer checks, which does not matter here: chain and revocation checks are KSeF's job when a
code is scanned, never this module's.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import re
from typing import Literal, get_args

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ksef_async.errors import ConfigurationError, CryptoError

__all__ = [
    "QR_HOSTS",
    "CertificateType",
    "ContextType",
    "KodIILink",
    "KodIIVerification",
    "KodILink",
    "certificate_serial_hex",
    "certificate_type",
    "invoice_hash_b64url",
    "kod_i_link",
    "kod_i_link_for_bytes",
    "kod_ii_link",
    "kod_ii_signed_data",
    "load_certificate",
    "parse_kod_i",
    "parse_kod_ii",
    "qr_host",
    "verify_kod_ii",
]

QR_HOSTS: dict[str, str] = {
    "test": "https://qr-test.ksef.mf.gov.pl",
    "demo": "https://qr-demo.ksef.mf.gov.pl",
    "prod": "https://qr.ksef.mf.gov.pl",
}
"""QR verification host per environment (official docs ``kody-qr.md`` and ``srodowiska.md``)."""

_ENV_ALIASES = {"prd": "prod", "production": "prod", "te": "test", "tr": "demo"}

ContextType = Literal["Nip", "InternalId", "NipVatUe", "PeppolId"]
"""Login-context identifier types allowed in KOD II."""

CertificateType = Literal["Offline", "Authentication"]

_CONTEXT_TYPES: tuple[str, ...] = get_args(ContextType)
_NIP_RE = re.compile(r"\d{10}")
# Context values travel as one path segment: only URL-unreserved characters, so nothing needs escaping.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_SERIAL_RE = re.compile(r"[0-9A-Fa-f]{1,40}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")
_SHA256_SIZE = 32
_PSS_SALT = 32
_MIN_RSA_BITS = 2048
_P1363_P256_SIZE = 64
_HASH_B64URL_LEN = 43  # 32 bytes, unpadded


def qr_host(env: str) -> str:
    """Return the QR verification host of ``env`` (``"test"``, ``"demo"`` or ``"prod"``; ``"prd"`` is accepted)."""
    key = env.strip().lower()
    key = _ENV_ALIASES.get(key, key)
    try:
        return QR_HOSTS[key]
    except KeyError:
        msg = f"env: unknown KSeF environment {env!r} (expected one of {', '.join(QR_HOSTS)})"
        raise ConfigurationError(msg) from None


def _env_of_host(host: str, *, field: str) -> str:
    for env, known in QR_HOSTS.items():
        if known == host:
            return env
    msg = f"{field}: {host!r} is not a KSeF QR host"
    raise ConfigurationError(msg)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64url_decode(text: str, *, field: str) -> bytes:
    if not _B64URL_RE.fullmatch(text):
        msg = f"{field} is not unpadded base64url"
        raise ConfigurationError(msg)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        msg = f"{field} is not unpadded base64url"
        raise ConfigurationError(msg) from exc
    # Non-canonical text (unused low bits set in the last character) decodes to the same bytes as another text:
    # refused, so that one digest or signature has exactly one spelling in a link.
    if _b64url(raw) != text:
        msg = f"{field} is not canonical base64url (unused bits set in the last character)"
        raise ConfigurationError(msg)
    return raw


def invoice_hash_b64url(invoice_hash: bytes | str) -> str:
    """Normalise an invoice SHA-256 to the unpadded base64url form used in links.

    Args:
        invoice_hash: The 32 raw digest bytes, or the digest as standard Base64 (the spec's ``invoiceHash``) or
            base64url, with or without padding.

    Raises:
        ConfigurationError: The value is not a SHA-256 digest in one of those forms.
    """
    if isinstance(invoice_hash, bytes):
        raw = invoice_hash
    else:
        text = invoice_hash.strip().rstrip("=").replace("+", "-").replace("/", "_")
        raw = _b64url_decode(text, field="invoice hash")
    if len(raw) != _SHA256_SIZE:
        msg = f"invoice hash: expected a 32-byte SHA-256 digest, got {len(raw)} bytes"
        raise ConfigurationError(msg)
    return _b64url(raw)


def _check_nip(value: str, field: str) -> str:
    # Format only, not the checksum: the official client's own KOD I vectors use 1234567890, and KSeF is the judge.
    if not _NIP_RE.fullmatch(value):
        msg = f"{field}: {value!r} is not a 10-digit NIP"
        raise ConfigurationError(msg)
    return value


def kod_i_link(seller_nip: str, issue_date: dt.date, invoice_hash: bytes | str, *, env: str = "test") -> str:
    """Build the KOD I verification link of an invoice.

    Args:
        seller_nip: The seller's NIP (``Podmiot1/DaneIdentyfikacyjne/NIP``).
        issue_date: The issue date (``P_1``).
        invoice_hash: SHA-256 of the exact invoice file bytes (see `invoice_hash_b64url` for accepted forms).
        env: ``"test"``, ``"demo"`` or ``"prod"``.

    Returns:
        ``{host}/invoice/{nip}/{DD-MM-YYYY}/{hash}``.
    """
    nip = _check_nip(seller_nip, "seller NIP")
    return f"{qr_host(env)}/invoice/{nip}/{issue_date:%d-%m-%Y}/{invoice_hash_b64url(invoice_hash)}"


def kod_i_link_for_bytes(data: bytes, seller_nip: str, issue_date: dt.date, *, env: str = "test") -> str:
    """Build KOD I from the exact invoice file bytes (hashed as they are: no re-serialisation, BOM kept)."""
    return kod_i_link(seller_nip, issue_date, hashlib.sha256(data).digest(), env=env)


@attrs.frozen
class KodILink:
    """A parsed KOD I link.

    Attributes:
        env: The environment of the link's host.
        seller_nip: Seller NIP.
        issue_date: Issue date (``P_1``).
        invoice_hash: Unpadded base64url SHA-256 of the invoice file.
    """

    env: str
    seller_nip: str
    issue_date: dt.date
    invoice_hash: str

    @property
    def url(self) -> str:
        """The link rebuilt from its parts."""
        return kod_i_link(self.seller_nip, self.issue_date, self.invoice_hash, env=self.env)

    def matches(self, data: bytes) -> bool:
        """Whether ``data`` (an invoice file's exact bytes) has the hash this link carries."""
        return _b64url(hashlib.sha256(data).digest()) == self.invoice_hash


def _split_link(link: str, kind: str, count: int) -> tuple[str, list[str]]:
    field = f"KOD {'I' if kind == 'invoice' else 'II'} link"
    head, sep, rest = link.strip().partition(f"/{kind}/")
    if not sep:
        msg = f"{field}: no /{kind}/ segment"
        raise ConfigurationError(msg)
    parts = rest.split("/")
    if len(parts) != count or not all(parts):
        msg = f"{field}: expected {count} path segments after /{kind}/, got {len(parts)}"
        raise ConfigurationError(msg)
    return _env_of_host(head, field=field), parts


def _parse_date(value: str, field: str) -> dt.date:
    try:
        return dt.datetime.strptime(value, "%d-%m-%Y").date()  # noqa: DTZ007 - a calendar date, no time zone
    except ValueError:
        msg = f"{field}: {value!r} is not a DD-MM-YYYY date"
        raise ConfigurationError(msg) from None


def parse_kod_i(link: str) -> KodILink:
    """Split a KOD I link into its parts, checking each.

    Raises:
        ConfigurationError: Unknown host, wrong shape, bad NIP, date or hash.
    """
    env, (nip, date, digest) = _split_link(link, "invoice", 3)
    if len(digest) != _HASH_B64URL_LEN:
        msg = "KOD I link: the hash segment is not an unpadded base64url SHA-256"
        raise ConfigurationError(msg)
    return KodILink(
        env=env,
        seller_nip=_check_nip(nip, "KOD I link seller NIP"),
        issue_date=_parse_date(date, "KOD I link date"),
        invoice_hash=invoice_hash_b64url(digest),
    )


# --- certificates ---------------------------------------------------------------------------------------------

_ECDSA_OIDS = tuple(
    bytes.fromhex(h)
    for h in (
        "06072a8648ce3d0401",  # ecdsa-with-SHA1
        "06082a8648ce3d040301",  # ecdsa-with-SHA224
        "06082a8648ce3d040302",  # ecdsa-with-SHA256
        "06082a8648ce3d040303",  # ecdsa-with-SHA384
        "06082a8648ce3d040304",  # ecdsa-with-SHA512
    )
)
_DER_NULL = b"\x05\x00"


def _der_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, header length, content length) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:  # noqa: PLR2004 - short-form length
        return tag, 2, first
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 2 + n > len(data):  # noqa: PLR2004
        raise ValueError("bad DER length")
    return tag, 2 + n, int.from_bytes(data[pos + 2 : pos + 2 + n], "big")


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:  # noqa: PLR2004
        return bytes((tag, size)) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(raw))) + raw + content


def _children(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        _, head, size = _der_header(data, pos)
        out.append(data[pos : pos + head + size])
        pos += head + size
    if pos != len(data):
        raise ValueError("DER element overruns its parent")
    return out


def _content(element: bytes) -> bytes:
    _, head, size = _der_header(element, 0)
    return element[head : head + size]


def _fix_alg_id(element: bytes) -> bytes:
    # AlgorithmIdentifier ::= SEQUENCE { OID, params }: drop a NULL params after an ECDSA OID (RFC 5758 §3.2).
    body = _content(element)
    for oid in _ECDSA_OIDS:
        if body == oid + _DER_NULL:
            return _der(0x30, oid)
    return element


def _strip_ecdsa_null_params(der: bytes) -> bytes:
    """Rewrite a certificate whose ECDSA signature AlgorithmIdentifiers carry a NULL parameter (see module doc)."""
    cert = _children(_content(der))
    if len(cert) != 3:  # noqa: PLR2004 - tbsCertificate, signatureAlgorithm, signatureValue
        raise ValueError("not an X.509 certificate")
    tbs = _children(_content(cert[0]))
    index = 1 if tbs and tbs[0][0] == 0xA0 else 0  # skip the optional [0] version  # noqa: PLR2004
    index += 1  # serialNumber
    inner, outer = _fix_alg_id(tbs[index]), _fix_alg_id(cert[1])
    if inner == tbs[index] and outer == cert[1]:
        return der  # the usual case: nothing to remove, bytes untouched
    tbs[index] = inner
    return _der(0x30, _der(0x30, b"".join(tbs)) + outer + cert[2])


def load_certificate(data: bytes, *, name: str = "certificate") -> x509.Certificate:
    """Load a PEM or DER X.509 certificate, tolerating the official example's NULL ECDSA parameters.

    Args:
        data: PEM or DER bytes.
        name: What to call the certificate in errors (e.g. its file name).

    Raises:
        CryptoError: The bytes are not a certificate this module can read.
    """
    der = _pem_body(data, name) if b"-----BEGIN" in data else data
    # Rewritten before parsing, not after a failure, so versions that warn instead of refusing stay quiet too.
    # Bytes not shaped like a certificate are left for cryptography to explain.
    with contextlib.suppress(ValueError):
        der = _strip_ecdsa_null_params(der)
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        msg = f"{name}: not a readable X.509 certificate ({exc})"
        raise CryptoError(msg) from exc


def _pem_body(data: bytes, name: str) -> bytes:
    match = re.search(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", data, re.DOTALL)
    if match is None:
        msg = f"{name}: no PEM CERTIFICATE block"
        raise CryptoError(msg)
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = f"{name}: the PEM CERTIFICATE block is not Base64"
        raise CryptoError(msg) from exc


def certificate_serial_hex(certificate: x509.Certificate) -> str:
    """The serial as KSeF writes it: upper-case hex of the DER INTEGER bytes (``01F20A5D352AE590``)."""
    serial = certificate.serial_number
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big").hex().upper()


def certificate_type(certificate: x509.Certificate) -> CertificateType | None:
    """Tell a KSeF ``Offline`` certificate (nonRepudiation) from an ``Authentication`` one (digitalSignature only).

    Returns:
        ``"Offline"`` when keyUsage has nonRepudiation, ``"Authentication"`` when it has digitalSignature without
        nonRepudiation, ``None`` when the certificate has no keyUsage extension or neither bit.
    """
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if usage.content_commitment:  # cryptography's name for nonRepudiation
        return "Offline"
    if usage.digital_signature:
        return "Authentication"
    return None


# --- KOD II -----------------------------------------------------------------------------------------------------


def _check_context(context_type: str, context_value: str) -> None:
    if context_type not in _CONTEXT_TYPES:
        msg = f"context type: {context_type!r} is not one of {', '.join(_CONTEXT_TYPES)}"
        raise ConfigurationError(msg)
    if context_type == "Nip":
        _check_nip(context_value, "context value")
    elif not _SEGMENT_RE.fullmatch(context_value):
        msg = f"context value: {context_value!r} has characters that cannot stand in a link path segment"
        raise ConfigurationError(msg)


def kod_ii_signed_data(
    context_type: ContextType,
    context_value: str,
    seller_nip: str,
    certificate_serial: str,
    invoice_hash: bytes | str,
    *,
    env: str = "test",
) -> str:
    """The text that KOD II signs: the link without ``https://``, up to and including the hash, no trailing ``/``."""
    _check_context(context_type, context_value)
    nip = _check_nip(seller_nip, "seller NIP")
    if not _SERIAL_RE.fullmatch(certificate_serial):
        msg = f"certificate serial: {certificate_serial!r} is not hexadecimal"
        raise ConfigurationError(msg)
    host = qr_host(env).removeprefix("https://")
    digest = invoice_hash_b64url(invoice_hash)
    return f"{host}/certificate/{context_type}/{context_value}/{nip}/{certificate_serial}/{digest}"


def _same_public_key(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    mine, theirs = private_key.public_key(), cert.public_key()
    if isinstance(mine, rsa.RSAPublicKey) and isinstance(theirs, rsa.RSAPublicKey):
        return mine.public_numbers() == theirs.public_numbers()
    if isinstance(mine, ec.EllipticCurvePublicKey) and isinstance(theirs, ec.EllipticCurvePublicKey):
        return mine.public_numbers() == theirs.public_numbers()
    return False


def _sign(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < _MIN_RSA_BITS:
            msg = f"KOD II: RSA keys must have at least {_MIN_RSA_BITS} bits, this one has {private_key.key_size}"
            raise CryptoError(msg)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT)
        return private_key.sign(data, pss, hashes.SHA256())
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            msg = f"KOD II: EC keys must be on P-256, this one is on {private_key.curve.name}"
            raise CryptoError(msg)
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    msg = "KOD II: the private key must be RSA or EC P-256"  # type: ignore[unreachable]
    raise CryptoError(msg)


def kod_ii_link(
    context_type: ContextType,
    context_value: str,
    seller_nip: str,
    invoice_hash: bytes | str,
    *,
    certificate: x509.Certificate,
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    env: str = "test",
) -> str:
    """Build and sign a KOD II link with a KSeF ``Offline`` certificate.

    Args:
        context_type: The login-context identifier type (``Nip``, ``InternalId``, ``NipVatUe``, ``PeppolId``).
        context_value: The context identifier.
        seller_nip: The seller's NIP from the invoice.
        invoice_hash: SHA-256 of the exact invoice file bytes.
        certificate: The KSeF ``Offline`` certificate; its serial goes into the link.
        private_key: The certificate's private key (RSA >= 2048 or EC P-256).
        env: ``"test"``, ``"demo"`` or ``"prod"``.

    Raises:
        CryptoError: The certificate is not an ``Offline`` one, the key does not belong to it, or the key type or
            size is not allowed.
        ConfigurationError: A link field is malformed.
    """
    kind = certificate_type(certificate)
    if kind != "Offline":
        found = kind or "no keyUsage digitalSignature/nonRepudiation"
        msg = f"KOD II: only a KSeF Offline certificate (keyUsage nonRepudiation) may sign; this one is {found}"
        raise CryptoError(msg)
    if not _same_public_key(private_key, certificate):
        msg = "KOD II: the private key does not belong to the certificate"
        raise CryptoError(msg)
    signed = kod_ii_signed_data(
        context_type, context_value, seller_nip, certificate_serial_hex(certificate), invoice_hash, env=env
    )
    signature = _sign(private_key, signed.encode("utf-8"))
    return f"https://{signed}/{_b64url(signature)}"


@attrs.frozen
class KodIILink:
    """A parsed KOD II link.

    Attributes:
        env: The environment of the link's host.
        context_type: The login-context identifier type.
        context_value: The context identifier.
        seller_nip: Seller NIP.
        certificate_serial: The signing certificate's serial, as written in the link.
        invoice_hash: Unpadded base64url SHA-256 of the invoice file.
        signature: The raw signature bytes (not shown in a repr).
    """

    env: str
    context_type: ContextType
    context_value: str
    seller_nip: str
    certificate_serial: str
    invoice_hash: str
    signature: bytes = attrs.field(repr=False)

    @property
    def signed_data(self) -> str:
        """The text the signature covers."""
        return kod_ii_signed_data(
            self.context_type,
            self.context_value,
            self.seller_nip,
            self.certificate_serial,
            self.invoice_hash,
            env=self.env,
        )


def parse_kod_ii(link: str) -> KodIILink:
    """Split a KOD II link into its parts, checking each.

    Raises:
        ConfigurationError: Unknown host, wrong shape or a malformed field.
    """
    env, (ctx_type, ctx_value, nip, serial, digest, signature) = _split_link(link, "certificate", 6)
    if ctx_type not in _CONTEXT_TYPES:
        msg = f"KOD II link: context type {ctx_type!r} is not one of {', '.join(_CONTEXT_TYPES)}"
        raise ConfigurationError(msg)
    if len(digest) != _HASH_B64URL_LEN:
        msg = "KOD II link: the hash segment is not an unpadded base64url SHA-256"
        raise ConfigurationError(msg)
    parsed = KodIILink(
        env=env,
        context_type=ctx_type,  # type: ignore[arg-type]  # checked against ContextType just above
        context_value=ctx_value,
        seller_nip=nip,
        certificate_serial=serial,
        invoice_hash=invoice_hash_b64url(digest),
        signature=_b64url_decode(signature, field="KOD II link signature"),
    )
    _ = parsed.signed_data  # validates context, NIP and serial
    return parsed


@attrs.frozen
class KodIIVerification:
    """A KOD II link whose signature checked out against a certificate.

    Attributes:
        link: The parsed link.
        certificate_type: ``"Offline"``, ``"Authentication"`` or ``None``, from the certificate's keyUsage.
    """

    link: KodIILink
    certificate_type: CertificateType | None

    @property
    def offline_certificate(self) -> bool:
        """Whether the signing certificate is an ``Offline`` one, the only type KSeF lets sign KOD II."""
        return self.certificate_type == "Offline"


def _verify_signature(public_key: object, signature: bytes, data: bytes) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT)
        public_key.verify(signature, data, pss, hashes.SHA256())
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            msg = f"KOD II: certificate key is on {public_key.curve.name}, not P-256"
            raise CryptoError(msg)
        if len(signature) == _P1363_P256_SIZE:  # IEEE P1363 r||s; anything else is tried as DER
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            signature = encode_dss_signature(r, s)
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        return
    msg = "KOD II: certificate key is neither RSA nor EC"
    raise CryptoError(msg)


def verify_kod_ii(link: str, certificate: x509.Certificate, *, require_offline: bool = False) -> KodIIVerification:
    """Verify a KOD II link with the certificate whose serial it names.

    Checks the link's shape, that its serial is the certificate's, and the signature over the rebuilt signed data.
    It does not check the certificate's chain, validity period or revocation, nor the issuer's permissions: KSeF
    does that when the code is scanned.

    Args:
        link: The full KOD II link.
        certificate: The signing certificate (see `load_certificate`).
        require_offline: Also refuse a certificate that is not an ``Offline`` one (keyUsage nonRepudiation).

    Returns:
        The parsed link and the certificate type.

    Raises:
        CryptoError: Serial mismatch, bad signature, or (with ``require_offline``) a non-Offline certificate.
        ConfigurationError: The link is malformed.
    """
    parsed = parse_kod_ii(link)
    if int(parsed.certificate_serial, 16) != certificate.serial_number:
        msg = (
            f"KOD II: the link names certificate {parsed.certificate_serial}, "
            f"the certificate given is {certificate_serial_hex(certificate)}"
        )
        raise CryptoError(msg)
    kind = certificate_type(certificate)
    if require_offline and kind != "Offline":
        msg = f"KOD II: certificate {certificate_serial_hex(certificate)} is not an Offline certificate ({kind})"
        raise CryptoError(msg)
    try:
        _verify_signature(certificate.public_key(), parsed.signature, parsed.signed_data.encode("utf-8"))
    except InvalidSignature:
        msg = f"KOD II: the signature does not verify with certificate {certificate_serial_hex(certificate)}"
        raise CryptoError(msg) from None
    return KodIIVerification(link=parsed, certificate_type=kind)
