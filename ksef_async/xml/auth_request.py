"""Builds, parses and schema-checks the unsigned ``AuthTokenRequest`` XML of the XAdES login (auth schema 2.0/2.1)."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import Any, Literal, cast

import attrs
from lxml import etree

from ksef_async._schemas import schema_path
from ksef_async.errors import KsefError
from ksef_async.xml._resolver import DoctypeRefusedError, hardened_parser, parse_untrusted

__all__ = [
    "AUTH_NAMESPACES",
    "AllowedIps",
    "AuthRequestError",
    "AuthTokenRequest",
    "ContextIdentifier",
    "ContextIdentifierType",
    "SchemaVersion",
    "SubjectIdentifierType",
    "build_auth_token_request",
    "parse_auth_token_request",
    "safe_xml_parser",
    "validate_auth_token_request",
]

SchemaVersion = Literal["2.0", "2.1"]
ContextIdentifierType = Literal["Nip", "InternalId", "NipVatUe", "PeppolId"]
SubjectIdentifierType = Literal["certificateSubject", "certificateFingerprint"]

AUTH_NAMESPACES: dict[str, str] = {
    "2.0": "http://ksef.mf.gov.pl/auth/token/2.0",
    "2.1": "http://ksef.mf.gov.pl/auth/token/2.1",
}
_VERSION_BY_NS = {ns: version for version, ns in AUTH_NAMESPACES.items()}
_MAX_IPS = 10  # XSD maxOccurs of each AllowedIps child

# The TContextIdentifier patterns of schemat_auth_v2-1.xsd, anchored for Python (the XSD's TNipVatUE and TPeppolId
# carry a stray ``^``/``$`` that XSD treats as literal characters; see validate_auth_token_request).
_NIP = r"[1-9]((\d[1-9])|([1-9]\d))\d{7}"
_CONTEXT_PATTERNS: dict[str, re.Pattern[str]] = {
    "Nip": re.compile(rf"{_NIP}"),
    "InternalId": re.compile(rf"{_NIP}-\d{{5}}"),
    "NipVatUe": re.compile(
        rf"{_NIP}-((AT)(U\d{{8}})|(BE)([01]{{1}}\d{{9}})|(BG)(\d{{9,10}})|(CY)(\d{{8}}[A-Z])|(CZ)(\d{{8,10}})"
        r"|(DE)(\d{9})|(DK)(\d{8})|(EE)(\d{9})|(EL)(\d{9})|(ES)([A-Z]\d{8}|\d{8}[A-Z]|[A-Z]\d{7}[A-Z])|(FI)(\d{8})"
        r"|(FR)[A-Z0-9]{2}\d{9}|(HR)(\d{11})|(HU)(\d{8})|(IE)(\d{7}[A-Z]{2}|\d[A-Z0-9+*]\d{5}[A-Z])|(IT)(\d{11})"
        r"|(LT)(\d{9}|\d{12})|(LU)(\d{8})|(LV)(\d{11})|(MT)(\d{8})|(NL)([A-Z0-9+*]{12})|(PT)(\d{9})|(RO)(\d{2,10})"
        r"|(SE)(\d{12})|(SI)(\d{8})|(SK)(\d{10})|(XI)((\d{9}|(\d{12}))|(GD|HA)(\d{3})))"
    ),
    "PeppolId": re.compile(r"P[A-Z]{2}[0-9]{6}"),
}
_CHALLENGE_RE = re.compile(r"\d{8}-CR-[A-F0-9]{10}-[A-F0-9]{10}-[A-F0-9]{2}")
_SUBJECT_TYPES = ("certificateSubject", "certificateFingerprint")


class AuthRequestError(KsefError, ValueError):
    """An ``AuthTokenRequest`` value (challenge, context identifier, IP list) is malformed."""


def safe_xml_parser() -> etree.XMLParser:
    """Return an lxml parser that never resolves entities, loads DTDs, reads files or touches the network."""
    return hardened_parser()


def _check_context(instance: ContextIdentifier, _attribute: attrs.Attribute[str], value: str) -> None:
    pattern = _CONTEXT_PATTERNS.get(instance.type)
    if pattern is None:
        msg = f"ContextIdentifier.type must be one of {sorted(_CONTEXT_PATTERNS)}, not {instance.type!r}"
        raise AuthRequestError(msg)
    if not pattern.fullmatch(value):
        msg = f"ContextIdentifier.value {value!r} is not a valid {instance.type}"
        raise AuthRequestError(msg)


@attrs.frozen
class ContextIdentifier:
    """The context a login is for: ``type`` (Nip, InternalId, NipVatUe, PeppolId) and its ``value``.

    The same pair as the API's ``AuthenticationContextIdentifier``; kept independent of the generated models.
    """

    type: ContextIdentifierType
    value: str = attrs.field(validator=_check_context)


def _is_ipv4_item(kind: str, text: str) -> bool:
    try:
        if kind == "Ip4Address":
            ipaddress.IPv4Address(text)
            return True
        if kind == "Ip4Range":
            first, sep, last = text.partition("-")
            return bool(sep) and ipaddress.IPv4Address(first) <= ipaddress.IPv4Address(last)
        address, sep, prefix = text.partition("/")
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    # The XSD allows 0..32 without leading zeros.
    return bool(sep) and prefix.isdigit() and int(prefix) <= 32 and (len(prefix) == 1 or prefix[0] != "0")  # noqa: PLR2004


def _check_ipv4(kind: str, text: str) -> None:
    if not _is_ipv4_item(kind, text):
        msg = f"AllowedIps.{kind} {text!r} is not a valid IPv4 {kind.removeprefix('Ip4').lower()}"
        raise AuthRequestError(msg)


def _ip_list(kind: str) -> Any:  # attrs.field() is typed Any on purpose
    def check(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
        if len(value) > _MAX_IPS:
            msg = f"AllowedIps.{kind} holds {len(value)} entries; KSeF allows at most {_MAX_IPS}"
            raise AuthRequestError(msg)
        for item in value:
            _check_ipv4(kind, item)

    return attrs.field(default=(), converter=tuple, validator=check)


@attrs.frozen
class AllowedIps:
    """``AuthorizationPolicy/AllowedIps``: the IPv4 addresses that may use the tokens of this login.

    Attributes:
        ip4_addresses: Single addresses, e.g. ``"192.0.2.10"``.
        ip4_ranges: Inclusive ranges ``"a.b.c.d-e.f.g.h"``.
        ip4_masks: CIDR blocks ``"a.b.c.d/n"``.
    """

    ip4_addresses: tuple[str, ...] = _ip_list("Ip4Address")
    ip4_ranges: tuple[str, ...] = _ip_list("Ip4Range")
    ip4_masks: tuple[str, ...] = _ip_list("Ip4Mask")


@attrs.frozen
class AuthTokenRequest:
    """The content of an ``AuthTokenRequest`` document."""

    challenge: str
    context: ContextIdentifier
    subject_identifier_type: SubjectIdentifierType
    allowed_ips: AllowedIps | None = None
    schema_version: SchemaVersion = "2.0"


def build_auth_token_request(
    challenge: str,
    context: ContextIdentifier,
    subject_identifier_type: SubjectIdentifierType,
    allowed_ips: AllowedIps | None = None,
    *,
    schema_version: SchemaVersion = "2.0",
) -> bytes:
    """Build the unsigned ``AuthTokenRequest`` XML, elements in XSD order, ready for XAdES signing.

    Args:
        challenge: The ``challenge`` from ``POST /auth/challenge`` (36 characters).
        context: The context to log in to.
        subject_identifier_type: ``certificateSubject`` (identity read from the certificate subject) or
            ``certificateFingerprint`` (identity is the certificate's SHA-256 fingerprint).
        allowed_ips: Optional IP restriction for the tokens issued by this login.
        schema_version: ``"2.0"`` or ``"2.1"``: the namespace of the document; KSeF accepts both.

    Returns:
        UTF-8 XML with an XML declaration.

    Raises:
        AuthRequestError: A malformed challenge, subject identifier type or schema version.
    """
    if not _CHALLENGE_RE.fullmatch(challenge):
        msg = (
            f"challenge {challenge!r} does not have the KSeF challenge form (e.g. 20250514-CR-226FB7B000-3ACF9BE4C0-10)"
        )
        raise AuthRequestError(msg)
    if subject_identifier_type not in _SUBJECT_TYPES:
        msg = f"subject_identifier_type must be one of {list(_SUBJECT_TYPES)}, not {subject_identifier_type!r}"
        raise AuthRequestError(msg)
    ns = AUTH_NAMESPACES.get(schema_version)
    if ns is None:
        msg = f"schema_version must be one of {sorted(AUTH_NAMESPACES)}, not {schema_version!r}"
        raise AuthRequestError(msg)

    def q(tag: str) -> str:
        return f"{{{ns}}}{tag}"

    root = etree.Element(q("AuthTokenRequest"), nsmap={None: ns})  # type: ignore[dict-item]
    etree.SubElement(root, q("Challenge")).text = challenge
    context_el = etree.SubElement(root, q("ContextIdentifier"))
    etree.SubElement(context_el, q(context.type)).text = context.value
    etree.SubElement(root, q("SubjectIdentifierType")).text = subject_identifier_type
    if allowed_ips is not None:
        allowed = etree.SubElement(etree.SubElement(root, q("AuthorizationPolicy")), q("AllowedIps"))
        for tag, values in (
            ("Ip4Address", allowed_ips.ip4_addresses),
            ("Ip4Range", allowed_ips.ip4_ranges),
            ("Ip4Mask", allowed_ips.ip4_masks),
        ):
            for value in values:
                etree.SubElement(allowed, q(tag)).text = value
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


@functools.cache
def _auth_schema(namespace: str) -> etree.XMLSchema:
    r"""Compile schemat_auth_v2-1.xsd for ``namespace`` with the two broken patterns repaired.

    schemat_auth_v2-0.xsd does not compile (``^``/``\b``/``$`` in its IP patterns), and 2.1 differs from it only
    in those patterns, so the 2.1 structure under the 2.0 namespace checks 2.0 documents. In 2.1, ``TNipVatUE``
    ends in ``$`` and ``TPeppolId`` is ``^...$``: XSD reads them as literal characters, so no real value could
    match; they are dropped, which is what KSeF evidently means (its own NipVatUe sample needs it).
    """
    text = schema_path("xsd", "auth", "schemat_auth_v2-1.xsd").read_text(encoding="utf-8")
    text = text.replace(AUTH_NAMESPACES["2.1"], namespace)
    text = text.replace('value="^P[A-Z]{2}[0-9]{6}$"', 'value="P[A-Z]{2}[0-9]{6}"')
    text = text.replace('(\\d{3}))))$"/>', '(\\d{3}))))"/>')
    if '$"' in text or '"^' in text:  # the repair above no longer fits the bundled XSD: fail loudly
        msg = "unexpected anchors left in schemat_auth_v2-1.xsd after relaxation"
        raise RuntimeError(msg)
    return etree.XMLSchema(etree.fromstring(text.encode("utf-8"), safe_xml_parser()))


def validate_auth_token_request(data: bytes | etree._Element) -> list[str]:
    """Validate an unsigned ``AuthTokenRequest`` (2.0 or 2.1 namespace) against the bundled 2.1 XSD.

    A ``ds:Signature`` must be removed first (the XSD declares none); the relaxations are described in
    `_auth_schema`.

    Returns:
        Readable problems (``line N: message``); empty when valid.
    """
    if isinstance(data, bytes):
        try:
            root = parse_untrusted(data, safe_xml_parser())
        except DoctypeRefusedError as exc:
            return [str(exc)]
        except etree.XMLSyntaxError as exc:
            return [f"not well-formed XML: {exc}"]
    else:
        root = data
    namespace = etree.QName(root).namespace
    if namespace not in _VERSION_BY_NS:
        return [f"root element {root.tag!r} is not an AuthTokenRequest of namespace {sorted(_VERSION_BY_NS)}"]
    schema = _auth_schema(namespace)
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in cast("Iterable[Any]", schema.error_log)]


def _text(el: etree._Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def parse_auth_token_request(root: etree._Element) -> AuthTokenRequest:
    """Read an ``AuthTokenRequest`` element (already schema-valid) into `AuthTokenRequest`.

    Raises:
        AuthRequestError: The element is not an ``AuthTokenRequest`` or a value is malformed.
    """
    ns = etree.QName(root).namespace
    if ns not in _VERSION_BY_NS or etree.QName(root).localname != "AuthTokenRequest":
        msg = f"root element {root.tag!r} is not an AuthTokenRequest"
        raise AuthRequestError(msg)
    n = {"a": ns}
    context_el = root.find("a:ContextIdentifier", n)
    choice = next(iter(context_el), None) if context_el is not None else None
    if choice is None:
        msg = "AuthTokenRequest has no ContextIdentifier"
        raise AuthRequestError(msg)
    context = ContextIdentifier(type=cast("ContextIdentifierType", etree.QName(choice).localname), value=_text(choice))
    allowed_el = root.find("a:AuthorizationPolicy/a:AllowedIps", n)
    allowed = None
    if allowed_el is not None:
        allowed = AllowedIps(
            ip4_addresses=tuple(_text(e) for e in allowed_el.findall("a:Ip4Address", n)),
            ip4_ranges=tuple(_text(e) for e in allowed_el.findall("a:Ip4Range", n)),
            ip4_masks=tuple(_text(e) for e in allowed_el.findall("a:Ip4Mask", n)),
        )
    subject = _text(root.find("a:SubjectIdentifierType", n))
    if subject not in _SUBJECT_TYPES:
        msg = f"SubjectIdentifierType {subject!r} is not one of {list(_SUBJECT_TYPES)}"
        raise AuthRequestError(msg)
    return AuthTokenRequest(
        challenge=_text(root.find("a:Challenge", n)),
        context=context,
        subject_identifier_type=cast("SubjectIdentifierType", subject),
        allowed_ips=allowed,
        schema_version=cast("SchemaVersion", _VERSION_BY_NS[ns]),
    )
