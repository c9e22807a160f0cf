"""Enveloped XAdES-BES signing of XML (the KSeF XAdES login) and verification of signed ``AuthTokenRequest``s."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from typing import Literal, Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import exceptions as signxml_exceptions
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier, XAdESVerifyResult

from ksef_async.core.certs import certificate_fingerprint
from ksef_async.core.codes import ExceptionCode
from ksef_async.errors import CryptoError, KsefError
from ksef_async.xml._resolver import DoctypeRefusedError, parse_untrusted
from ksef_async.xml.auth_request import (
    AllowedIps,
    AuthRequestError,
    ContextIdentifier,
    SchemaVersion,
    SubjectIdentifierType,
    parse_auth_token_request,
    safe_xml_parser,
    validate_auth_token_request,
)

__all__ = [
    "DS_NS",
    "XADES_NS",
    "KeyCertSigner",
    "SignatureError",
    "SignatureErrorCode",
    "SubjectIdentity",
    "VerifiedAuthRequest",
    "XmlSigner",
    "identity_from_certificate",
    "sign_enveloped_xades",
    "verify_auth_token_request",
]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
_SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
_MIN_RSA_BITS = 2048
_MIN_EC_BITS = 256

SignatureErrorCode = Literal[9101, 9102, 9103, 9105, ExceptionCode.BAD_CERTIFICATE, ExceptionCode.XSD_MISMATCH]
"""KSeF codes: 9101 bad document, 9102 no signature, 9103 too many signatures, 9105 invalid signature,
21115 unusable certificate, 21401 document does not match the XSD."""


class SignatureError(KsefError):
    """A signed document is rejected; ``code`` is the matching KSeF exception code."""

    def __init__(self, code: SignatureErrorCode, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"[{code}] {reason}")


class XmlSigner(Protocol):
    """Anything that turns an XML document into the same document with an enveloped XAdES signature.

    Implementations are synchronous (an HSM or smart card may block); async callers run them in a worker thread.
    """

    def sign(self, xml: bytes) -> bytes:
        """Return ``xml`` with an enveloped XAdES signature appended to its root element."""
        ...


def _ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def _xades(tag: str) -> str:
    return f"{{{XADES_NS}}}{tag}"


def _c14n(node: etree._Element | etree._ElementTree) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _signature_method_for(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < _MIN_RSA_BITS:
            msg = f"RSA key of {public_key.key_size} bits; KSeF requires at least {_MIN_RSA_BITS}"
            raise CryptoError(msg)
        return _RSA_SHA256
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size < _MIN_EC_BITS:
            msg = f"EC curve {public_key.curve.name}; KSeF requires at least {_MIN_EC_BITS} bits"
            raise CryptoError(msg)
        return _ECDSA_SHA256
    msg = f"unsupported certificate key type {type(public_key).__name__}; use RSA or EC"
    raise CryptoError(msg)


def sign_enveloped_xades(
    xml: bytes,
    *,
    certificate: x509.Certificate,
    sign_signed_info: Callable[[bytes], bytes],
    signature_method: str | None = None,
    clock: Callable[[], float] = time.time,
) -> bytes:
    """Append an enveloped XAdES-BES signature to the root of ``xml``, in the shape of the official C# client.

    The signature has two references, both SHA-256 with exclusive canonicalization: ``URI=""`` (with the
    enveloped-signature transform) and the ``SignedProperties``; ``KeyInfo/X509Data`` carries ``certificate``;
    ``SignedProperties`` holds ``SigningTime`` (now minus one minute, against clock skew) and
    ``SigningCertificate`` (SHA-256 digest of the certificate DER and its issuer/serial).

    This is the building block for hardware keys: ``sign_signed_info`` receives the canonical ``SignedInfo`` bytes
    and must return the XML-DSig ``SignatureValue`` bytes (PKCS#1 v1.5 for RSA; raw ``r||s`` for ECDSA).

    Args:
        xml: The document to sign (its root must not already hold a ``ds:Signature``).
        certificate: The signer's certificate.
        sign_signed_info: Signs the canonical SignedInfo.
        signature_method: The SignatureMethod URI; by default rsa-sha256 or ecdsa-sha256 from the certificate key.
        clock: Returns the current Unix time.

    Returns:
        The signed document, UTF-8 with an XML declaration.

    Raises:
        CryptoError: The document cannot be parsed or is already signed, or the key is unusable.
    """
    try:
        root = parse_untrusted(xml, safe_xml_parser())
    except DoctypeRefusedError as exc:
        msg = f"document to sign refused: {exc}"
        raise CryptoError(msg) from None
    except etree.XMLSyntaxError as exc:
        msg = f"document to sign is not well-formed XML: {exc}"
        raise CryptoError(msg) from None
    if root.find(f".//{_ds('Signature')}") is not None:
        msg = "document to sign already contains a ds:Signature"
        raise CryptoError(msg)
    method = signature_method or _signature_method_for(certificate.public_key())
    token = uuid.uuid4().hex
    signature_id = f"Signature-{token}"
    properties_id = f"SignedProperties-{token}"
    # Digest of the whole document before the signature exists == after the enveloped-signature transform.
    document_digest = _b64_sha256(_c14n(root.getroottree()))

    signature = etree.SubElement(root, _ds("Signature"), nsmap={"ds": DS_NS}, Id=signature_id)
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=_EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method)
    doc_ref = etree.SubElement(signed_info, _ds("Reference"), URI="")
    transforms = etree.SubElement(doc_ref, _ds("Transforms"))
    etree.SubElement(transforms, _ds("Transform"), Algorithm=_ENVELOPED)
    etree.SubElement(transforms, _ds("Transform"), Algorithm=_EXC_C14N)
    etree.SubElement(doc_ref, _ds("DigestMethod"), Algorithm=_SHA256)
    etree.SubElement(doc_ref, _ds("DigestValue")).text = document_digest
    props_ref = etree.SubElement(signed_info, _ds("Reference"), URI=f"#{properties_id}", Type=_SIGNED_PROPERTIES_TYPE)
    etree.SubElement(etree.SubElement(props_ref, _ds("Transforms")), _ds("Transform"), Algorithm=_EXC_C14N)
    etree.SubElement(props_ref, _ds("DigestMethod"), Algorithm=_SHA256)
    props_digest = etree.SubElement(props_ref, _ds("DigestValue"))
    signature_value = etree.SubElement(signature, _ds("SignatureValue"))
    x509_data = etree.SubElement(etree.SubElement(signature, _ds("KeyInfo")), _ds("X509Data"))
    etree.SubElement(x509_data, _ds("X509Certificate")).text = base64.b64encode(
        certificate.public_bytes(serialization.Encoding.DER)
    ).decode("ascii")

    qualifying = etree.SubElement(
        etree.SubElement(signature, _ds("Object")),
        _xades("QualifyingProperties"),
        nsmap={"xades": XADES_NS},
        Target=f"#{signature_id}",
    )
    properties = etree.SubElement(qualifying, _xades("SignedProperties"), Id=properties_id)
    signature_props = etree.SubElement(properties, _xades("SignedSignatureProperties"))
    signing_time = dt.datetime.fromtimestamp(clock() - 60, dt.UTC).replace(microsecond=0)
    etree.SubElement(signature_props, _xades("SigningTime")).text = signing_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    cert_el = etree.SubElement(etree.SubElement(signature_props, _xades("SigningCertificate")), _xades("Cert"))
    cert_digest = etree.SubElement(cert_el, _xades("CertDigest"))
    etree.SubElement(cert_digest, _ds("DigestMethod"), Algorithm=_SHA256)
    etree.SubElement(cert_digest, _ds("DigestValue")).text = _b64_sha256(
        certificate.public_bytes(serialization.Encoding.DER)
    )
    issuer_serial = etree.SubElement(cert_el, _xades("IssuerSerial"))
    etree.SubElement(issuer_serial, _ds("X509IssuerName")).text = certificate.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, _ds("X509SerialNumber")).text = str(certificate.serial_number)

    props_digest.text = _b64_sha256(_c14n(properties))
    signature_value.text = base64.b64encode(sign_signed_info(_c14n(signed_info))).decode("ascii")
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def _load_key(data: bytes, password: bytes | None) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        # The message of cryptography names no secret, but keep ours generic and fixed anyway.
        msg = "private key PEM cannot be read (wrong password, or not a PEM private key)"
        raise CryptoError(msg) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        msg = f"unsupported private key type {type(key).__name__}; use RSA or EC"
        raise CryptoError(msg)
    return key


@attrs.frozen
class KeyCertSigner:
    """An `XmlSigner` holding a software private key and its certificate.

    Create it with `from_pem` or `from_pkcs12`; the key never appears in the repr.

    Attributes:
        key: The private key (RSA >= 2048 bits or EC >= 256 bits).
        certificate: The matching certificate, embedded in the signature's KeyInfo.
        clock: Returns the current Unix time (for SigningTime).
    """

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = attrs.field(repr=False)
    certificate: x509.Certificate
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)
    signature_method: str = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        method = _signature_method_for(self.certificate.public_key())
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        expected = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public != expected:
            msg = f"private key does not match the certificate of {self.certificate.subject.rfc4514_string()}"
            raise CryptoError(msg)
        object.__setattr__(self, "signature_method", method)

    @classmethod
    def from_pem(
        cls,
        key: bytes,
        certificate: bytes,
        password: bytes | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> KeyCertSigner:
        """Load a PEM private key (optionally encrypted) and a PEM certificate.

        Raises:
            CryptoError: Unreadable key or certificate, wrong password, or key and certificate do not match.
        """
        try:
            cert = x509.load_pem_x509_certificate(certificate)
        except ValueError:
            msg = "certificate PEM cannot be read"
            raise CryptoError(msg) from None
        return cls(_load_key(key, password), cert, clock=clock)

    @classmethod
    def from_pkcs12(
        cls, data: bytes, password: bytes | None = None, *, clock: Callable[[], float] = time.time
    ) -> KeyCertSigner:
        """Load a PKCS#12 (.p12/.pfx) container holding the private key and its certificate.

        Raises:
            CryptoError: Unreadable container, wrong password, or no key/certificate inside.
        """
        try:
            key, cert, _chain = pkcs12.load_key_and_certificates(data, password)
        except (ValueError, TypeError):
            msg = "PKCS#12 container cannot be read (wrong password, or not PKCS#12)"
            raise CryptoError(msg) from None
        if key is None or cert is None:
            msg = "PKCS#12 container must hold both a private key and its certificate"
            raise CryptoError(msg)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            msg = f"unsupported private key type {type(key).__name__}; use RSA or EC"
            raise CryptoError(msg)
        return cls(key, cert, clock=clock)

    def _sign_signed_info(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        der = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        # XML-DSig (RFC 4050/6931) wants r||s, each left-padded to the curve's byte length, not DER.
        r, s = decode_dss_signature(der)
        size = (self.key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def sign(self, xml: bytes) -> bytes:
        """Return ``xml`` with an enveloped XAdES-BES signature by this key (see `sign_enveloped_xades`)."""
        return sign_enveloped_xades(
            xml,
            certificate=self.certificate,
            sign_signed_info=self._sign_signed_info,
            signature_method=self.signature_method,
            clock=self.clock,
        )


@attrs.frozen
class SubjectIdentity:
    """Who logged in, as KSeF derives it from the certificate.

    Attributes:
        type: ``"Nip"`` or ``"Pesel"`` (from the subject) or ``"Fingerprint"`` (SHA-256 of the certificate).
        value: The identifier.
    """

    type: Literal["Nip", "Pesel", "Fingerprint"]
    value: str


_PESEL_RE = re.compile(r"(PNOPL|PESEL).*?(\d{11})")
_NIP_RE = re.compile(r"(TINPL|NIP).*?(\d{10})")
_VATPL_RE = re.compile(r"(VATPL).*?(\d{10})")


def identity_from_certificate(
    certificate: x509.Certificate, subject_identifier_type: SubjectIdentifierType
) -> SubjectIdentity:
    r"""Derive the login identity from ``certificate`` as KSeF does.

    For ``certificateSubject``: serialNumber (OID 2.5.4.5) with PESEL (``(PNOPL|PESEL).*?(\d{11})``) or NIP
    (``(TINPL|NIP).*?(\d{10})``), else organizationIdentifier (OID 2.5.4.97) ``(VATPL).*?(\d{10})``.
    For ``certificateFingerprint``: the SHA-256 of the certificate DER, upper-case hex.

    Raises:
        SignatureError: ``certificateSubject`` but the subject holds no usable identifier (code 21115).
    """
    if subject_identifier_type == "certificateFingerprint":
        return SubjectIdentity("Fingerprint", certificate_fingerprint(certificate))
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        text = str(attribute.value)
        if match := _PESEL_RE.search(text):
            return SubjectIdentity("Pesel", match.group(2))
        if match := _NIP_RE.search(text):
            return SubjectIdentity("Nip", match.group(2))
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        if match := _VATPL_RE.search(str(attribute.value)):
            return SubjectIdentity("Nip", match.group(2))
    msg = (
        f"certificate {certificate.subject.rfc4514_string()} has no PESEL/NIP serialNumber nor VATPL "
        "organizationIdentifier; use certificateFingerprint"
    )
    raise SignatureError(ExceptionCode.BAD_CERTIFICATE, msg)


@attrs.frozen
class VerifiedAuthRequest:
    """A signed ``AuthTokenRequest`` whose signature checked out, with the identity taken from its certificate.

    Attributes:
        challenge: ``Challenge``.
        context: ``ContextIdentifier``.
        subject_identifier_type: ``SubjectIdentifierType``.
        allowed_ips: ``AuthorizationPolicy/AllowedIps``, or None.
        certificate: The signer's certificate (from ``KeyInfo``).
        identity: The login identity derived from the certificate.
        signing_time: XAdES ``SigningTime``, when readable.
        schema_version: ``"2.0"`` or ``"2.1"``, from the namespace.
        document_digest: Base64 SHA-256 of the signed document as received, which a UPO reports as
            ``SkrotDokumentuUwierzytelniajacego``.
    """

    challenge: str
    context: ContextIdentifier
    subject_identifier_type: SubjectIdentifierType
    allowed_ips: AllowedIps | None
    certificate: x509.Certificate
    identity: SubjectIdentity
    signing_time: dt.datetime | None
    schema_version: SchemaVersion
    document_digest: str


def _parse_signing_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def verify_auth_token_request(signed_xml: bytes, *, now: dt.datetime | None = None) -> VerifiedAuthRequest:
    """Verify the XAdES signature of an ``AuthTokenRequest`` and read the request and the signer.

    Accepts self-signed certificates (as KSeF TEST does): the signature is checked with the certificate embedded
    in ``KeyInfo`` (a ``KeyValue`` beside it is not consulted); no chain, OCSP or CRL is consulted. The signature
    must be enveloped (a direct child of the root signing the whole document: ``URI=""`` with the
    enveloped-signature transform) or enveloping (the request inside a signed ``ds:Object``), and carry signed
    XAdES properties whose ``SigningCertificate`` digest matches that certificate.

    Args:
        signed_xml: The body of ``POST /auth/xades-signature``.
        now: The time at which the certificate must be valid; defaults to the current time.

    Returns:
        The request content, certificate and derived identity.

    Raises:
        SignatureError: ``code`` 9101 (unreadable or detached), 9102 (unsigned), 9103 (several signatures),
            9105 (signature, digest or certificate digest mismatch), 21115 (unusable certificate) or 21401 (XSD).
    """
    root = _parse_signed(signed_xml)
    signature, request_el = _locate_signature(root)
    certificate = _embedded_certificate(signature)
    # The key is the certificate's: a KeyValue beside it is only a hint, and some producers write it wrongly
    # (signxml 5.1 drops a leading zero byte of an EC coordinate), so it is ignored rather than compared.
    config = XAdESSignatureConfiguration(expect_references=True, verification_time=now, ignore_ambiguous_key_info=True)
    try:
        verifier = XAdESVerifier()
        verifier._parser = safe_xml_parser()  # type: ignore[assignment]  # signxml parses with it  # noqa: SLF001
        results = verifier.verify(signed_xml, x509_cert=certificate, expect_config=config)
    except signxml_exceptions.InvalidCertificate as exc:
        raise SignatureError(ExceptionCode.BAD_CERTIFICATE, f"certificate not usable: {exc}") from None
    except signxml_exceptions.SignXMLException as exc:
        raise SignatureError(9105, f"signature verification failed: {exc}") from None
    properties = [r for r in results if isinstance(r, XAdESVerifyResult)]
    if not properties:
        raise SignatureError(9105, "signature has no signed XAdES SignedProperties (not XAdES-BES)")
    signing_time = _parse_signing_time(properties[0].signed_properties.findtext(_xades("SigningTime")))

    if request_el is root:
        root.remove(signature)
    else:  # enveloping: check the signed AuthTokenRequest on its own
        request_el = etree.fromstring(etree.tostring(request_el), safe_xml_parser())
    problems = validate_auth_token_request(request_el)
    if problems:
        raise SignatureError(
            ExceptionCode.XSD_MISMATCH, "AuthTokenRequest does not match the XSD: " + "; ".join(problems[:5])
        )
    try:
        request = parse_auth_token_request(request_el)
    except AuthRequestError as exc:
        raise SignatureError(ExceptionCode.XSD_MISMATCH, str(exc)) from None
    return VerifiedAuthRequest(
        challenge=request.challenge,
        context=request.context,
        subject_identifier_type=request.subject_identifier_type,
        allowed_ips=request.allowed_ips,
        certificate=certificate,
        identity=identity_from_certificate(certificate, request.subject_identifier_type),
        signing_time=signing_time,
        schema_version=request.schema_version,
        document_digest=_b64_sha256(signed_xml),
    )


def _parse_signed(signed_xml: bytes) -> etree._Element:
    try:
        return parse_untrusted(signed_xml, safe_xml_parser())
    except DoctypeRefusedError as exc:
        raise SignatureError(9101, f"document refused: {exc}") from None
    except etree.XMLSyntaxError as exc:
        raise SignatureError(9101, f"document is not well-formed XML: {exc}") from None


def _locate_signature(root: etree._Element) -> tuple[etree._Element, etree._Element]:
    """Return (the one ds:Signature, the AuthTokenRequest it covers); reject detached or partial signatures.

    Enveloped: the signature is a child of the AuthTokenRequest root with a ``URI=""`` reference and the
    enveloped-signature transform. Enveloping: the root is the signature, and a reference points at a ``ds:Object``
    child holding the AuthTokenRequest. Both are accepted by KSeF; detached ones are not.
    """
    enveloping = root.tag == _ds("Signature")
    signatures = root.findall(f".//{_ds('Signature')}")
    if not signatures and not enveloping:
        raise SignatureError(9102, "document carries no ds:Signature")
    if len(signatures) + enveloping > 1:
        raise SignatureError(9103, f"document carries {len(signatures) + enveloping} signatures; one is expected")
    signature = root if enveloping else signatures[0]
    if not enveloping and signature.getparent() is not root:
        raise SignatureError(9101, "ds:Signature must be a direct child of AuthTokenRequest (enveloped)")
    references = signature.findall(f"{_ds('SignedInfo')}/{_ds('Reference')}")
    uris = [ref.get("URI") for ref in references]
    if any(uri is None or (uri != "" and not uri.startswith("#")) for uri in uris):
        raise SignatureError(9101, "signature references content outside the document (detached)")
    if enveloping:
        for obj in signature.findall(_ds("Object")):
            children = [c for c in obj if isinstance(c.tag, str)]
            if (
                f"#{obj.get('Id')}" in uris
                and len(children) == 1
                and etree.QName(children[0]).localname == "AuthTokenRequest"
            ):
                return signature, children[0]
        raise SignatureError(9101, "signature does not carry a signed AuthTokenRequest (detached signature)")
    covers_document = any(
        ref.get("URI") == ""
        and any(t.get("Algorithm") == _ENVELOPED for t in ref.findall(f"{_ds('Transforms')}/{_ds('Transform')}"))
        for ref in references
    )
    if not covers_document:
        raise SignatureError(
            9101, 'signature does not cover the document (detached): no Reference URI="" with enveloped-signature'
        )
    return signature, root


def _embedded_certificate(signature: etree._Element) -> x509.Certificate:
    text = signature.findtext(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}")
    if not text or not text.strip():
        raise SignatureError(9105, "signature carries no KeyInfo/X509Data/X509Certificate")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))
    except ValueError:
        raise SignatureError(ExceptionCode.BAD_CERTIFICATE, "the X509Certificate in KeyInfo cannot be read") from None
