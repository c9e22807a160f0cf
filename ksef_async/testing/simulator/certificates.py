"""The ``/certificates`` endpoints and the certificate limits: a CA that checks CSRs and issues KSeF certificates.

What they model (spec ``Certyfikaty``; codes from the operation descriptions):

* enrollment data describe the certificate of the caller's XAdES login (after a KSeF-token login: 25001, and
  enrolling is 25002);
* a CSR must be a valid PKCS#10 (25004) with an RSA-2048 or EC P-256 key (25010), signed with SHA-1/256/384/512
  (25011), whose subject has exactly the enrollment-data attributes (25003); the subject's enrollment and
  active-certificate limits apply (25006, 25007; ``GET /certificates/limits``, ``GET /limits/subject``,
  ``/testdata/limits/subject/certificate``);
* the request stays at status 100 for ``config.processing_delay`` seconds, then ends with 200 and a certificate
  signed by the simulator's own CA (key usage digitalSignature for ``Authentication``, nonRepudiation for
  ``Offline``), or with 400 when another subject already certified that public key;
* an issued ``Authentication`` certificate logs in with XAdES (`ksef_async.testing.simulator.auth.xades_login`
  consults `login_refusal`); a revoked one, or an ``Offline`` one, ends such a login with status 460;
* revoking (25008 unknown, 25009 not active) is refused after a KSeF-token login (403).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ksef_async.core.certs import signing_certificate
from ksef_async.testing.simulator.problems import ApiFailure, forbidden, gone
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import AuthOperation, CertificateEnrollment, IssuedCertificate, iso

__all__ = [
    "DEFAULT_MAX_CERTIFICATES",
    "DEFAULT_MAX_ENROLLMENTS",
    "HANDLERS",
    "enrollment_data",
    "login_refusal",
]

DEFAULT_MAX_ENROLLMENTS = 6
"""Enrollments a subject may submit unless ``/testdata/limits/subject/certificate`` says otherwise."""
DEFAULT_MAX_CERTIFICATES = 2
"""Active certificates a subject may hold unless ``/testdata/limits/subject/certificate`` says otherwise."""

_VALIDITY = dt.timedelta(days=730)  # a simulator choice: the spec does not state a KSeF certificate's lifetime
_STATUS_RETENTION = dt.timedelta(days=30)  # "Status wniosku jest dostępny przez 30 dni."
_CSR_HASHES = (hashes.SHA1, hashes.SHA256, hashes.SHA384, hashes.SHA512)
_NAME_RE = re.compile(r"^[a-zA-Z0-9_\- ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]{5,100}$")
_SERIAL_RE = re.compile(r"^[0-9A-F]{16}$")
_TYPES = ("Authentication", "Offline")
_STATUSES = ("Active", "Blocked", "Revoked", "Expired")
_REASONS = ("Unspecified", "Superseded", "KeyCompromise")
_INVALID = "Błąd walidacji danych wejściowych."

# Spec field of CertificateEnrollmentDataResponse -> subject attribute, written independently of ksef_async.core.csr
# so that a wrong OID on the client side cannot pass here too.
_SUBJECT_FIELDS: tuple[tuple[str, x509.ObjectIdentifier], ...] = (
    ("commonName", x509.ObjectIdentifier("2.5.4.3")),
    ("countryName", x509.ObjectIdentifier("2.5.4.6")),
    ("givenName", x509.ObjectIdentifier("2.5.4.42")),
    ("surname", x509.ObjectIdentifier("2.5.4.4")),
    ("serialNumber", x509.ObjectIdentifier("2.5.4.5")),
    ("uniqueIdentifier", x509.ObjectIdentifier("2.5.4.45")),
    ("organizationName", x509.ObjectIdentifier("2.5.4.10")),
    ("organizationIdentifier", x509.ObjectIdentifier("2.5.4.97")),
)


def _subject_of(rt: Runtime, op: AuthOperation) -> tuple[str, str]:
    """Who acts: the XAdES identity, or the author of the KSeF token used to log in."""
    if op.identity is not None:
        return op.identity
    token = next((t for t in rt.state.tokens.values() if t.reference_number == op.token_reference), None)
    if token is not None and token.author is not None:
        return token.author
    return ("Nip", op.context[1].split("-")[0])


def _caller(principal: Principal | None) -> AuthOperation:
    assert principal is not None
    return principal.operation


def _login_certificate(op: AuthOperation, code: int, what: str) -> x509.Certificate:
    if op.category != "XadesSignature" or op.certificate_der is None:
        raise ApiFailure(400, code, what, [f"authentication method category {op.category}"])
    return x509.load_der_x509_certificate(op.certificate_der)


def enrollment_data(certificate: x509.Certificate) -> dict[str, str]:
    """``CertificateEnrollmentDataResponse`` of a login certificate: the listed attributes its subject carries."""
    data: dict[str, str] = {}
    for name, oid in _SUBJECT_FIELDS:
        values = certificate.subject.get_attributes_for_oid(oid)
        if values:
            value = values[0].value
            data[name] = value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")
    return data


def _limits(rt: Runtime, subject: tuple[str, str]) -> tuple[int, int]:
    override = rt.state.certificate_limits.get(subject, {})
    return (
        override.get("maxEnrollments", DEFAULT_MAX_ENROLLMENTS),
        override.get("maxCertificates", DEFAULT_MAX_CERTIFICATES),
    )


def _usage(rt: Runtime, subject: tuple[str, str]) -> tuple[int, int]:
    """(enrollments submitted, certificates active) of ``subject`` now."""
    now = rt.state.clock.now_dt()
    enrollments = sum(1 for e in rt.state.enrollments.values() if e.owner == subject)
    active = sum(1 for c in rt.state.certificates.values() if c.owner == subject and _status(c, now) == "Active")
    return enrollments, active


def _status(cert: IssuedCertificate, now: dt.datetime) -> str:
    if cert.status == "Active" and now >= cert.valid_to:
        return "Expired"
    return cert.status


def login_refusal(rt: Runtime, certificate: x509.Certificate) -> str | None:
    """Why a XAdES login signed with ``certificate`` must fail (status 460), or None; records the use when fine.

    Only certificates this simulator issued are judged: others (qualified, self-signed test ones) pass.
    """
    der = certificate.public_bytes(serialization.Encoding.DER)
    issued = next((c for c in rt.state.certificates.values() if c.der == der), None)
    if issued is None:
        return None
    now = rt.state.clock.now_dt()
    status = _status(issued, now)
    if status != "Active":
        return f"KSeF certificate {issued.serial_number} is {status}"
    if issued.certificate_type != "Authentication":
        return f"KSeF certificate {issued.serial_number} is of type {issued.certificate_type}, not Authentication"
    issued.last_use = now
    return None


# -- handlers ------------------------------------------------------------------------------------------------------


async def get_limits(rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /certificates/limits``."""
    subject = _subject_of(rt, _caller(principal))
    max_enrollments, max_certificates = _limits(rt, subject)
    enrollments, active = _usage(rt, subject)
    left_enrollments = max(0, max_enrollments - enrollments)
    left_certificates = max(0, max_certificates - active)
    return web.json_response(
        {
            "canRequest": left_enrollments > 0 and left_certificates > 0,
            "enrollment": {"remaining": left_enrollments, "limit": max_enrollments},
            "certificate": {"remaining": left_certificates, "limit": max_certificates},
        }
    )


async def limits_subject(rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /limits/subject``: the limits in force for the caller (``/testdata`` overrides or the defaults)."""
    max_enrollments, max_certificates = _limits(rt, _subject_of(rt, _caller(principal)))
    return web.json_response(
        {"enrollment": {"maxEnrollments": max_enrollments}, "certificate": {"maxCertificates": max_certificates}}
    )


async def set_limits(rt: Runtime, _request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /testdata/limits/subject/certificate``: override the caller's limits (absent fields stay)."""
    subject = _subject_of(rt, _caller(principal))
    override = dict(rt.state.certificate_limits.get(subject, {}))
    for group, name in (("enrollment", "maxEnrollments"), ("certificate", "maxCertificates")):
        value = opt(opt(body, group, dict, {}), name, int)
        if value is None:
            continue
        if value < 0:
            raise ApiFailure(400, 21405, _INVALID, [f"{group}.{name} must be >= 0"])
        override[name] = value
    rt.state.certificate_limits[subject] = override
    return web.Response(status=200)


async def reset_limits(rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``DELETE /testdata/limits/subject/certificate``: back to the defaults."""
    rt.state.certificate_limits.pop(_subject_of(rt, _caller(principal)), None)
    return web.Response(status=200)


async def get_enrollment_data(
    _rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /certificates/enrollments/data``: from the certificate of the caller's XAdES login."""
    certificate = _login_certificate(
        _caller(principal), 25001, "Brak możliwości pobrania danych do CSR dla wykorzystanego sposobu uwierzytelnienia."
    )
    data = enrollment_data(certificate)
    data.setdefault("commonName", "")
    data.setdefault("countryName", "PL")
    return web.json_response(data)


def _parse_csr(body: Any) -> x509.CertificateSigningRequest:
    bad = "Niepoprawny format CSR lub niepoprawny podpis CSR."
    try:
        der = base64.b64decode(req(body, "csr", str), validate=True)
        csr = x509.load_der_x509_csr(der)
    except (ValueError, binascii.Error):
        raise ApiFailure(400, 25004, bad, ["csr is not a DER PKCS#10 request in Base64"]) from None
    key = csr.public_key()
    if not (
        (isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048)  # noqa: PLR2004
        or (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1))
    ):
        raise ApiFailure(400, 25010, "Nieprawidłowy typ lub długość klucza.", [type(key).__name__])
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if not isinstance(algorithm, _CSR_HASHES):
        raise ApiFailure(400, 25011, "Nieprawidłowy algorytm podpisu CSR.", [csr.signature_algorithm_oid.dotted_string])
    if not csr.is_signature_valid:
        raise ApiFailure(400, 25004, bad, ["the CSR signature does not verify"])
    return csr


def _subject_mismatch(csr: x509.CertificateSigningRequest, expected: dict[str, str]) -> list[str]:
    wanted = {oid: expected[name] for name, oid in _SUBJECT_FIELDS if name in expected}
    problems = []
    seen: dict[x509.ObjectIdentifier, str] = {}
    for attribute in csr.subject:
        value = attribute.value if isinstance(attribute.value, str) else bytes(attribute.value).decode("latin-1")
        if attribute.oid in seen or wanted.get(attribute.oid) != value:
            problems.append(f"unexpected {attribute.oid.dotted_string}={value!r}")
        seen[attribute.oid] = value
    problems.extend(f"missing {oid.dotted_string}={value!r}" for oid, value in wanted.items() if oid not in seen)
    return problems


def _ca(rt: Runtime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if rt.state.certificate_authority is None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "PL"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ksef-async simulator"),
                x509.NameAttribute(NameOID.COMMON_NAME, "KSeF Simulator CA"),
            ]
        )
        start = rt.state.clock.now_dt() - dt.timedelta(days=1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        rt.state.certificate_authority = (key, cert)
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] = rt.state.certificate_authority
    return ca


def _issue(
    rt: Runtime,
    csr: x509.CertificateSigningRequest,
    *,
    serial: int,
    certificate_type: str,
    valid_from: dt.datetime,
) -> x509.Certificate:
    ca_key, ca_cert = _ca(rt)
    offline = certificate_type == "Offline"
    return signing_certificate(
        subject=csr.subject,
        public_key=csr.public_key(),
        issuer=ca_cert.subject,
        issuer_key=ca_key,
        serial=serial,
        not_before=valid_from,
        not_after=valid_from + _VALIDITY,
        digital_signature=not offline,
        content_commitment=offline,
    )


def _parse_time(text: str | None, field: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiFailure(400, 21405, _INVALID, [f"'{field}' is not a date-time"]) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def enroll(rt: Runtime, _request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /certificates/enrollments``."""
    op = _caller(principal)
    login_certificate = _login_certificate(
        op, 25002, "Brak możliwości złożenia wniosku certyfikacyjnego dla wykorzystanego sposobu uwierzytelnienia."
    )
    name = req(body, "certificateName", str)
    certificate_type = req(body, "certificateType", str)
    if not _NAME_RE.match(name) or certificate_type not in _TYPES:
        raise ApiFailure(400, 21405, _INVALID, ["certificateName or certificateType does not match the schema"])
    valid_from = _parse_time(opt(body, "validFrom", str), "validFrom")
    csr = _parse_csr(body)
    problems = _subject_mismatch(csr, enrollment_data(login_certificate))
    if problems:
        raise ApiFailure(
            400, 25003, "Dane w CSR nie zgadzają się z danymi w użytym wektorze uwierzytelniającym.", problems[:5]
        )
    subject = _subject_of(rt, op)
    max_enrollments, max_certificates = _limits(rt, subject)
    enrollments, active = _usage(rt, subject)
    if enrollments >= max_enrollments:
        raise ApiFailure(400, 25006, "Osiągnięto limit możliwych do złożenia wniosków certyfikacyjnych.")
    if active >= max_certificates:
        raise ApiFailure(400, 25007, "Osiągnięto limit dopuszczalnej liczby posiadanych certyfikatów.")

    now = rt.state.clock.now_dt()
    enrollment = CertificateEnrollment(
        reference_number=rt.reference("EH"),
        owner=subject,
        requested=now,
        ready=now + dt.timedelta(seconds=rt.config.processing_delay),
        code=200,
        description="Wniosek obsłużony (certyfikat wygenerowany)",
    )
    public_der = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    taken_by = next(
        (
            c.owner
            for c in rt.state.certificates.values()
            if x509.load_der_x509_certificate(c.der)
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            == public_der
        ),
        None,
    )
    if taken_by is not None and taken_by != subject:
        enrollment.code, enrollment.description = 400, "Wniosek odrzucony"
        enrollment.details = ["Klucz publiczny został już certyfikowany przez inny podmiot."]
    else:
        serial = rt.state.rng.randrange(1 << 60, 1 << 63)  # 16 hex digits, positive
        certificate = _issue(rt, csr, serial=serial, certificate_type=certificate_type, valid_from=valid_from or now)
        der = certificate.public_bytes(serialization.Encoding.DER)
        common = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        issued = IssuedCertificate(
            serial_number=f"{serial:016X}",
            name=name,
            certificate_type=certificate_type,
            der=der,
            fingerprint=certificate.fingerprint(hashes.SHA256()).hex().upper(),
            owner=subject,
            common_name=str(common[0].value) if common else "",
            valid_from=certificate.not_valid_before_utc,
            valid_to=certificate.not_valid_after_utc,
            request_date=now,
        )
        rt.state.certificates[issued.serial_number] = issued
        enrollment.serial_number = issued.serial_number
    rt.state.enrollments[enrollment.reference_number] = enrollment
    return web.json_response({"referenceNumber": enrollment.reference_number, "timestamp": iso(now)}, status=202)


async def enrollment_status(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /certificates/enrollments/{referenceNumber}``: 100 until processed, then 200 (or 400)."""
    subject = _subject_of(rt, _caller(principal))
    enrollment = rt.state.enrollments.get(request.match_info["referenceNumber"])
    if enrollment is None or enrollment.owner != subject:
        raise ApiFailure(400, 25005, "Wniosek certyfikacyjny o podanym numerze referencyjnym nie istnieje.")
    now = rt.state.clock.now_dt()
    if now > enrollment.requested + _STATUS_RETENTION:
        raise gone("Operacja wygasła i nie jest już dostępna.")
    body: dict[str, Any] = {"requestDate": iso(enrollment.requested)}
    if now < enrollment.ready:
        body["status"] = {"code": 100, "description": "Wniosek przyjęty do realizacji"}
    else:
        body["status"] = {"code": enrollment.code, "description": enrollment.description}
        if enrollment.details:
            body["status"]["details"] = enrollment.details
        if enrollment.serial_number is not None:
            body["certificateSerialNumber"] = enrollment.serial_number
    return web.json_response(body)


def _visible(rt: Runtime, principal: Principal | None) -> list[IssuedCertificate]:
    """The caller's certificates whose enrollment has been processed, newest request first."""
    subject = _subject_of(rt, _caller(principal))
    now = rt.state.clock.now_dt()
    ready = {e.serial_number for e in rt.state.enrollments.values() if e.serial_number and now >= e.ready}
    mine = [c for c in rt.state.certificates.values() if c.owner == subject and c.serial_number in ready]
    return sorted(mine, key=lambda c: c.request_date, reverse=True)


async def retrieve(rt: Runtime, _request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /certificates/retrieve``: the caller's certificates among the serial numbers asked (others omitted)."""
    serials = req(body, "certificateSerialNumbers", list)
    if not 1 <= len(serials) <= 10 or not all(isinstance(s, str) and _SERIAL_RE.match(s) for s in serials):  # noqa: PLR2004
        raise ApiFailure(400, 21405, _INVALID, ["certificateSerialNumbers: 1 to 10 serial numbers of 16 hex digits"])
    mine = {c.serial_number: c for c in _visible(rt, principal)}
    items = [
        {
            "certificate": base64.b64encode(c.der).decode("ascii"),
            "certificateName": c.name,
            "certificateSerialNumber": c.serial_number,
            "certificateType": c.certificate_type,
        }
        for s in serials
        if (c := mine.get(s)) is not None
    ]
    return web.json_response({"certificates": items})


def _page(request: web.Request, high: int) -> tuple[int, int]:
    try:
        size = int(request.query.get("pageSize", "10"))
        offset = int(request.query.get("pageOffset", "0"))
    except ValueError:
        raise ApiFailure(400, 21405, _INVALID, ["pageSize and pageOffset must be integers"]) from None
    if not 10 <= size <= high or offset < 0:  # noqa: PLR2004
        raise ApiFailure(400, 21405, _INVALID, [f"pageSize must be 10..{high} and pageOffset >= 0"])
    return size, offset


async def query(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /certificates/query``: filters are exact (serial, type, status), ``contains`` (name) or a date."""
    size, offset = _page(request, 50)
    serial = opt(body, "certificateSerialNumber", str)
    name = opt(body, "name", str)
    kind = opt(body, "type", str)
    status = opt(body, "status", str)
    if (kind is not None and kind not in _TYPES) or (status is not None and status not in _STATUSES):
        raise ApiFailure(400, 21405, _INVALID, ["type or status is not a known value"])
    expires_after = _parse_time(opt(body, "expiresAfter", str), "expiresAfter")
    now = rt.state.clock.now_dt()
    items = [
        c
        for c in _visible(rt, principal)
        if (serial is None or c.serial_number == serial)
        and (name is None or name.lower() in c.name.lower())
        and (kind is None or c.certificate_type == kind)
        and (status is None or _status(c, now) == status)
        and (expires_after is None or c.valid_to > expires_after)
    ]
    page = items[offset * size : (offset + 1) * size]
    return web.json_response(
        {
            "certificates": [
                {
                    "certificateSerialNumber": c.serial_number,
                    "name": c.name,
                    "type": c.certificate_type,
                    "commonName": c.common_name,
                    "status": _status(c, now),
                    "subjectIdentifier": {"type": c.owner[0], "value": c.owner[1]},
                    "validFrom": iso(c.valid_from),
                    "validTo": iso(c.valid_to),
                    "lastUseDate": iso(c.last_use) if c.last_use else None,
                    "requestDate": iso(c.request_date),
                }
                for c in page
            ],
            "hasMore": (offset + 1) * size < len(items),
        }
    )


async def revoke(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /certificates/{certificateSerialNumber}/revoke``: only the subject's own, never after a token login."""
    op = _caller(principal)
    if op.category == "Token":
        raise forbidden(
            "Operacja nie jest dostępna dla podmiotu uwierzytelnionego tokenem KSeF.",
            "auth-method-not-allowed",
            {"authenticationMethodCategory": op.category},
        )
    reason = opt(body, "revocationReason", str)
    if reason is not None and reason not in _REASONS:
        raise ApiFailure(400, 21405, _INVALID, [f"revocationReason {reason!r}"])
    serial = request.match_info["certificateSerialNumber"]
    mine = {c.serial_number: c for c in _visible(rt, principal)}
    certificate = mine.get(serial)
    if certificate is None:
        raise ApiFailure(400, 25008, "Certyfikat o podanym numerze seryjnym nie istnieje.", [serial])
    if _status(certificate, rt.state.clock.now_dt()) != "Active":
        raise ApiFailure(
            400,
            25009,
            "Nie można odwołać wskazanego certyfikatu, ponieważ jest już odwołany, zablokowany lub nieważny.",
            [serial],
        )
    certificate.status = "Revoked"
    return web.Response(status=204)


async def update_certificate(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``PUT /testdata/certificates/{serialNumber}``: shorten the validity of one of the subject's certificates.

    25008 for a serial number the subject has no certificate under; a ``validTo`` later than the current one is
    refused (21405). An earlier date ends the certificate then (status ``Expired`` once it has passed).
    """
    serial = request.match_info["serialNumber"]
    if not _SERIAL_RE.fullmatch(serial):
        raise ApiFailure(400, 21405, _INVALID, [f"serialNumber {serial!r}: 16 upper-case hex digits"])
    valid_to = _parse_time(req(body, "validTo", str), "validTo")
    assert valid_to is not None
    certificate = {c.serial_number: c for c in _visible(rt, principal)}.get(serial)
    if certificate is None:
        raise ApiFailure(400, 25008, "Certyfikat o podanym numerze seryjnym nie istnieje.", [serial])
    if valid_to > certificate.valid_to:
        raise ApiFailure(
            400, 21405, _INVALID, [f"'validTo' may not be later than the current validTo {iso(certificate.valid_to)}"]
        )
    certificate.valid_to = max(valid_to, certificate.valid_from)
    return web.Response(status=200)


HANDLERS = {
    "get_certificates_limits": get_limits,
    "get_certificates_enrollments_data": get_enrollment_data,
    "post_certificates_enrollments": enroll,
    "get_certificates_enrollments_by_reference_number": enrollment_status,
    "post_certificates_retrieve": retrieve,
    "post_certificates_query": query,
    "post_certificates_revoke": revoke,
    "get_limits_subject": limits_subject,
    "post_testdata_limits_subject_certificate": set_limits,
    "delete_testdata_limits_subject_certificate": reset_limits,
    "put_testdata_certificates_by_serial_number": update_certificate,
}
"""Operation id -> handler, merged into the application's routing table."""
