"""Authentication endpoints: keys, challenge, KSeF-token and XAdES logins, polling, redeem, refresh, auth sessions.

Also here: KSeF token creation (``POST /tokens``) and the limits and test-data endpoints that only need a login.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
import secrets
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ksef_async.core.crypto import KEY_USAGE_TOKEN, b64decode, rsa_oaep_decrypt, sha256_b64
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import CryptoError
from ksef_async.testing.simulator import certificates
from ksef_async.testing.simulator.problems import ApiFailure, forbidden
from ksef_async.testing.simulator.ratelimits import OVERRIDABLE_GROUPS
from ksef_async.testing.simulator.request_fields import opt, page_size, paged, req
from ksef_async.testing.simulator.runtime import RAW_BODY, Principal, Runtime
from ksef_async.testing.simulator.state import (
    ALL_PERMISSIONS,
    AuthOperation,
    ContextKey,
    ContextRecord,
    KsefTokenRecord,
    iso,
)

__all__ = [
    "add_token",
    "challenge",
    "create_token",
    "delete_auth_session",
    "delete_current_session",
    "get_auth_status",
    "get_token",
    "ksef_token_login",
    "list_auth_sessions",
    "list_tokens",
    "public_key_certificates",
    "rate_limits",
    "redeem",
    "refresh",
    "revoke_token",
    "testdata_block",
    "testdata_permissions",
    "testdata_rate_limits",
    "testdata_rate_limits_delete",
    "testdata_rate_limits_production",
    "xades_login",
]

_SUCCESS = "Uwierzytelnianie zakończone sukcesem"
_PERSON_SERIAL = re.compile(r"PNOPL|PESEL|TINPL|NIP|IDC")
# ``AuthenticationMethodInfo`` per ``AuthenticationMethod``. ``category`` is one of the spec's
# ``AuthenticationMethodCategory`` values (XadesSignature, NationalNode, Token, Other); ``displayName`` is the method's
# description in the spec's ``AuthenticationMethod`` table without the final full stop, as the spec's example
# ({"category": "XadesSignature", "code": "xades.qualified-seal", "displayName": "Pieczęć kwalifikowana"}) shows;
# ``code`` follows that example's ``<category>.<method>`` form (the spec lists no other code; the same codes are
# what an independent 2.9 client maps).
_METHOD_INFO: dict[str, dict[str, str]] = {
    "Token": {"category": "Token", "code": "token.ksef", "displayName": "Token KSeF"},
    "TrustedProfile": {
        "category": "NationalNode",
        "code": "national-node.trusted-profile",
        "displayName": "Profil Zaufany",
    },
    "InternalCertificate": {
        "category": "XadesSignature",
        "code": "xades.ksef-certificate",
        "displayName": "Certyfikat KSeF",
    },
    "QualifiedSignature": {
        "category": "XadesSignature",
        "code": "xades.qualified-signature",
        "displayName": "Podpis kwalifikowany",
    },
    "QualifiedSeal": {
        "category": "XadesSignature",
        "code": "xades.qualified-seal",
        "displayName": "Pieczęć kwalifikowana",
    },
    "PersonalSignature": {
        "category": "XadesSignature",
        "code": "xades.personal-signature",
        "displayName": "Podpis osobisty",
    },
    "PeppolSignature": {
        "category": "XadesSignature",
        "code": "xades.peppol-signature",
        "displayName": "Podpis dostawcy usług Peppol",
    },
}


def _xades_method(rt: Runtime, certificate: x509.Certificate, context: ContextKey) -> str:
    """The ``AuthenticationMethod`` of a XAdES login signed with ``certificate`` in ``context``.

    A Peppol provider's login (``PeppolId`` context) is ``PeppolSignature``; a certificate this simulator issued
    (``POST /certificates/enrollments``) is ``InternalCertificate`` (KSeF certificate); a certificate naming an
    organisation (``organizationIdentifier``) and no person (no given name, surname or personal ``serialNumber``)
    is a seal, ``QualifiedSeal``; anything else is a person's ``QualifiedSignature``.
    """
    if context[0] == "PeppolId":
        return "PeppolSignature"
    der = certificate.public_bytes(Encoding.DER)
    if any(issued.der == der for issued in rt.state.certificates.values()):
        return "InternalCertificate"
    subject = certificate.subject
    named = any(subject.get_attributes_for_oid(oid) for oid in (NameOID.GIVEN_NAME, NameOID.SURNAME))
    serials = subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    person = named or any(_PERSON_SERIAL.search(str(attribute.value)) for attribute in serials)
    if subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER) and not person:
        return "QualifiedSeal"
    return "QualifiedSignature"


def add_token(
    rt: Runtime,
    context: ContextKey,
    token: str | None,
    permissions: frozenset[str],
    description: str,
    *,
    author: tuple[str, str] | None = None,
) -> str:
    """Register a KSeF token for ``context`` (generating one when ``token`` is None); return the token."""
    record = rt.state.contexts.get(context)
    if record is None:
        record = ContextRecord(context)
        rt.state.contexts[context] = record
    reference = rt.reference("EC")
    if token is None:
        token = f"{reference}|{context[0].lower()}-{context[1]}|{secrets.token_hex(32)}"
    entry = KsefTokenRecord(
        token,
        reference,
        context,
        permissions,
        description,
        rt.state.clock.now_dt(),
        author=author or ("Nip", context[1].split("-")[0]),
    )
    record.tokens[reference] = entry
    rt.state.tokens[token] = entry
    return token


def _ts(moment: float) -> str:
    return iso(dt.datetime.fromtimestamp(moment, dt.UTC))


async def public_key_certificates(
    rt: Runtime, _request: web.Request, _principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /security/public-key-certificates``."""
    return web.json_response(rt.keys.to_json())


async def challenge(rt: Runtime, request: web.Request, _principal: Principal | None, _body: Any) -> web.Response:
    """``POST /auth/challenge``: a 36-character challenge valid for 10 minutes."""
    now = rt.state.clock.now()
    value = rt.reference("CR")
    rt.state.challenges[value] = now
    return web.json_response(
        {"challenge": value, "timestamp": _ts(now), "timestampMs": int(now * 1000), "clientIp": request.remote or ""}
    )


def _take_challenge(rt: Runtime, value: str) -> float:
    """Consume a challenge: 400 21111 when unknown, used or older than 10 minutes; return its time."""
    issued = rt.state.challenges.pop(value, None)
    if issued is None or rt.state.clock.now() - issued > rt.config.challenge_lifetime:
        raise ApiFailure(
            400, 21111, "Nieprawidłowe wyzwanie autoryzacyjne.", [f"challenge {value!r} unknown or expired"]
        )
    return issued


def _start(
    rt: Runtime,
    context: ContextKey,
    *,
    method: str,
    code: int,
    description: str,
    details: list[str],
    permissions: frozenset[str],
    **extra: Any,
) -> web.Response:
    record = rt.state.contexts.get(context)
    if code == 200 and record is not None and record.blocked:  # noqa: PLR2004
        code, description, details = 480, "Uwierzytelnianie zablokowane.", ["context blocked (testdata)"]
    if code == 200 and not permissions:  # noqa: PLR2004
        code, description, details = 415, "Uwierzytelnianie zakończone niepowodzeniem: brak przypisanych uprawnień.", []
    op = AuthOperation(
        reference_number=rt.reference("AU"),
        context=context,
        method=method,
        category=_METHOD_INFO[method]["category"],
        started=rt.state.clock.now_dt(),
        status_code=code,
        status_description=description,
        status_details=details,
        permissions=permissions if code == 200 else frozenset(),  # noqa: PLR2004
        **extra,
    )
    rt.state.auth_operations[op.reference_number] = op
    token, valid_until = rt.issue_token("authentication", op, rt.config.authentication_token_lifetime)
    return web.json_response(
        {
            "referenceNumber": op.reference_number,
            "authenticationToken": {"token": token, "validUntil": iso(valid_until)},
        },
        status=202,
    )


def _context(body: Any) -> ContextKey:
    ident = req(body, "contextIdentifier", dict)
    kind = req(ident, "type", str)
    if kind not in ("Nip", "InternalId", "NipVatUe", "PeppolId"):
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"contextIdentifier.type {kind!r}"])
    return kind, req(ident, "value", str)


async def ksef_token_login(rt: Runtime, _request: web.Request, _principal: Principal | None, body: Any) -> web.Response:
    """``POST /auth/ksef-token``: decrypt ``token|timestampMs``, check challenge, timestamp and token."""
    challenge_value = req(body, "challenge", str)
    context = _context(body)
    encrypted_text = req(body, "encryptedToken", str)
    keys = rt.keys.candidates(KEY_USAGE_TOKEN, opt(body, "publicKeyId", str))
    if keys is None:
        raise ApiFailure(400, 21470, "Nieznany lub wycofany klucz publiczny (publicKeyId).")
    try:
        encrypted = b64decode(encrypted_text, field="encryptedToken")
    except CryptoError:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", ["encryptedToken is not Base64"]) from None
    issued = _take_challenge(rt, challenge_value)
    plain: bytes | None = None
    for key in keys:
        try:
            plain = rsa_oaep_decrypt(key.private_key, encrypted)
            break
        except CryptoError:
            continue
    record, refusal = _check_token(rt, context, plain, issued)
    if record is None:
        return _bad_token(rt, context, refusal)
    record.last_use = rt.state.clock.now_dt()
    return _start(
        rt,
        context,
        method="Token",
        code=200,
        description=_SUCCESS,
        details=[],
        permissions=record.permissions,
        token_reference=record.reference_number,
    )


def _check_token(  # noqa: PLR0911 - one return per documented 450 detail
    rt: Runtime, context: ContextKey, plain: bytes | None, issued: float
) -> tuple[KsefTokenRecord | None, str]:
    """The token record of a decrypted ``token|timestampMs``, or None and the spec's status-450 ``details`` text."""
    if plain is None:
        return None, "Nieprawidłowe szyfrowanie tokena"
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    token, sep, stamp = text.rpartition("|")
    if not sep or not token or not text.isprintable():
        return None, "Nieprawidłowe kodowanie tokena"
    record = rt.state.tokens.get(token)
    if record is None:
        return None, "Nieprawidłowy token"
    if record.context != context:
        return None, f"Token nie może być użyty w kontekście {context[1]}"
    if record.status != "Active":
        return None, "Token unieważniony" if record.status == "Revoked" else "Token nieaktywny"
    if not stamp.isdigit() or abs(int(stamp) / 1000 - issued) > rt.config.token_timestamp_tolerance:
        return None, "Nieprawidłowy czas tokena"
    return record, ""


def _bad_token(rt: Runtime, context: ContextKey, detail: str) -> web.Response:
    """Start an operation that ends with status 450 (bad token), as KSeF reports token problems."""
    return _start(
        rt,
        context,
        method="Token",
        code=450,
        description="Uwierzytelnianie zakończone niepowodzeniem z powodu błędnego tokenu",
        details=[detail],
        permissions=frozenset(),
    )


async def xades_login(rt: Runtime, request: web.Request, _principal: Principal | None, _body: Any) -> web.Response:
    """``POST /auth/xades-signature``: verify the enveloped XAdES signature; identity from the certificate."""
    from ksef_async.xml.xades import SignatureError, verify_auth_token_request  # noqa: PLC0415 - signxml is heavy

    data: bytes = request[RAW_BODY]
    loop = asyncio.get_running_loop()
    try:
        verified = await loop.run_in_executor(
            None, functools.partial(verify_auth_token_request, data, now=rt.state.clock.now_dt())
        )
    except SignatureError as exc:
        raise ApiFailure(400, exc.code, exc.reason) from None
    except ValueError as exc:
        raise ApiFailure(400, 21401, "Błąd weryfikacji dokumentu z XSD.", [str(exc)]) from None
    _take_challenge(rt, verified.challenge)
    context: ContextKey = (verified.context.type, verified.context.value)
    identity = verified.identity
    context_nip = context[1].split("-")[0] if context[0] in ("Nip", "InternalId") else None
    person = rt.state.persons.get(identity.value) if identity.type == "Pesel" else None
    owner = context_nip is not None and (
        (identity.type == "Nip" and identity.value == context_nip) or (person is not None and person.nip == context_nip)
    )
    permissions = frozenset(ALL_PERMISSIONS) if owner else rt.state.grants.get((context, identity.type, identity.value))
    code, description, details = 200, _SUCCESS, []
    refusal = certificates.login_refusal(rt, verified.certificate)
    if refusal is not None:
        code, description, details = (
            460,
            "Uwierzytelnianie zakończone niepowodzeniem z powodu błędu certyfikatu.",
            [refusal],
        )
    elif person is not None and person.is_deceased:
        code, description, details = 470, "Uwierzytelnianie zakończone niepowodzeniem.", ["Osoba zmarła."]
    return _start(
        rt,
        context,
        method=_xades_method(rt, verified.certificate, context),
        code=code,
        description=description,
        details=details,
        permissions=permissions or frozenset(),
        document_hash=sha256_b64(data),
        identity=(identity.type, identity.value),
        certificate_der=verified.certificate.public_bytes(Encoding.DER),
    )


def _op_status(rt: Runtime, op: AuthOperation) -> tuple[int, str, list[str] | None]:
    """The operation's status now: 100 for ``auth_delay`` seconds, then its outcome."""
    if rt.state.clock.now_dt() < op.started + dt.timedelta(seconds=rt.config.auth_delay):
        return 100, "Uwierzytelnianie w toku", None
    return op.status_code, op.status_description, op.status_details or None


def _op_json(rt: Runtime, op: AuthOperation) -> dict[str, Any]:
    code, description, details = _op_status(rt, op)
    return {
        "startDate": iso(op.started),
        "authenticationMethod": op.method,
        "authenticationMethodInfo": _METHOD_INFO[op.method],
        "status": {"code": code, "description": description, "details": details},
        "isTokenRedeemed": op.redeemed,
        "lastTokenRefreshDate": iso(op.last_refresh) if op.last_refresh else None,
        "refreshTokenValidUntil": iso(op.refresh_valid_until) if op.refresh_valid_until else None,
    }


async def get_auth_status(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /auth/{referenceNumber}`` (bearer: the authenticationToken of that operation)."""
    assert principal is not None
    if principal.operation.reference_number != request.match_info["referenceNumber"]:
        raise ApiFailure(400, 21304, "Brak uwierzytelnienia.", ["operation not found"])
    return web.json_response(_op_json(rt, principal.operation))


async def redeem(rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``POST /auth/token/redeem``: once per operation (again: 400 21301)."""
    assert principal is not None
    op = principal.operation
    code = _op_status(rt, op)[0]
    if code != 200 or op.redeemed:  # noqa: PLR2004
        detail = "tokens already redeemed" if op.redeemed else f"authentication status {code}"
        raise ApiFailure(400, 21301, "Brak autoryzacji.", [detail])
    op.redeemed = True
    access, access_until = rt.issue_token("access", op, rt.config.access_token_lifetime)
    refresh_token, refresh_until = rt.issue_token("refresh", op, rt.config.refresh_token_lifetime)
    op.refresh_valid_until = refresh_until
    return web.json_response(
        {
            "accessToken": {"token": access, "validUntil": iso(access_until)},
            "refreshToken": {"token": refresh_token, "validUntil": iso(refresh_until)},
        }
    )


async def refresh(rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``POST /auth/token/refresh`` (bearer: the refresh token)."""
    assert principal is not None
    op = principal.operation
    if op.revoked:
        raise ApiFailure(400, 21301, "Brak autoryzacji.", ["authentication session revoked"])
    if op.token_reference is not None:
        token = next((t for t in rt.state.tokens.values() if t.reference_number == op.token_reference), None)
        if token is None or token.status != "Active":
            raise ApiFailure(400, 21301, "Brak autoryzacji.", ["KSeF token revoked"])
    access, access_until = rt.issue_token("access", op, rt.config.access_token_lifetime)
    op.last_refresh = rt.state.clock.now_dt()
    return web.json_response({"accessToken": {"token": access, "validUntil": iso(access_until)}})


async def list_auth_sessions(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /auth/sessions``: the context's active logins (redeemed, not revoked, refresh token still valid).

    Sorted by ``startDate`` descending (the spec's ``x-sort``), newest first; ``pageSize`` 10..100 (default 10).
    The continuation token marks the last item returned (keyset paging, as KSeF's token holds the last
    ``startDate``): logins made while a client pages do not shift later pages. ``isCurrent`` marks the login
    whose token the caller is using.
    """
    assert principal is not None
    now = rt.state.clock.now_dt()
    scope = f"auth:{principal.operation.context}"
    ranked = []
    for position, op in enumerate(rt.state.auth_operations.values()):
        if op.context != principal.operation.context or not op.redeemed or op.revoked:
            continue
        if op.refresh_valid_until is not None and op.refresh_valid_until <= now:
            continue
        ranked.append(((op.started, position), op))
    ranked.sort(key=lambda pair: pair[0], reverse=True)
    size = page_size(request, 10, 100)
    after = rt.parse_continuation(scope, request.headers.get("x-continuation-token"))
    if after:
        # The token holds the position (+1) of the last item of the previous page: continue below its sort key.
        ops = list(rt.state.auth_operations.values())
        if after > len(ops):
            raise ApiFailure(400, 21418, "Przekazany token kontynuacji ma nieprawidłowy format.")
        last = (ops[after - 1].started, after - 1)
        ranked = [pair for pair in ranked if pair[0] < last]
    page = ranked[:size]
    token = rt.continuation(scope, page[-1][0][1] + 1) if len(ranked) > size else None
    items = [
        _op_json(rt, op) | {"referenceNumber": op.reference_number, "isCurrent": op is principal.operation}
        for _, op in page
    ]
    return web.json_response({"continuationToken": token, "items": items})


async def delete_current_session(
    _rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``DELETE /auth/sessions/current``: revokes the refresh token; access tokens live on until ``exp``."""
    assert principal is not None
    principal.operation.revoked = True
    return web.Response(status=204)


async def delete_auth_session(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``DELETE /auth/sessions/{referenceNumber}``."""
    assert principal is not None
    ref = request.match_info["referenceNumber"]
    op = rt.state.auth_operations.get(ref)
    if op is None or op.context != principal.operation.context:
        # The operation's 400 table lists only 21405 (21304 belongs to the auth status and token operations).
        raise ApiFailure(400, 21405, details=[f"Sesja uwierzytelnienia {ref} nie istnieje w tym kontekście."])
    op.revoked = True
    return web.Response(status=204)


async def create_token(rt: Runtime, _request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /tokens``: only after a XAdES login, in a Nip or InternalId context."""
    assert principal is not None
    op = principal.operation
    if op.category != "XadesSignature":
        raise forbidden(
            "Tokeny KSeF można tworzyć wyłącznie po uwierzytelnieniu podpisem.",
            "auth-method-not-allowed",
            {"authenticationMethodCategory": op.category},
        )
    if op.context[0] not in ("Nip", "InternalId"):
        raise forbidden(
            "Niedozwolony typ kontekstu.", "context-type-not-allowed", {"contextIdentifierType": op.context[0]}
        )
    permissions = req(body, "permissions", list)
    description = req(body, "description", str)
    unknown = [p for p in permissions if p not in ALL_PERMISSIONS]
    if unknown or not 5 <= len(description) <= 256:  # noqa: PLR2004
        raise ApiFailure(
            400, 21405, "Błąd walidacji danych wejściowych.", [f"bad permissions {unknown} or description"]
        )
    token = add_token(rt, op.context, None, frozenset(permissions) & op.permissions, description, author=op.identity)
    reference = rt.state.tokens[token].reference_number
    return web.json_response({"referenceNumber": reference, "token": token}, status=202)


def _token_json(record: KsefTokenRecord) -> dict[str, Any]:
    """``TokenStatusResponse`` / ``QueryTokensResponseItem`` of a KSeF token (never the token itself)."""
    author = record.author or ("Nip", record.context[1])
    return {
        "referenceNumber": record.reference_number,
        "authorIdentifier": {"type": author[0], "value": author[1]},
        "contextIdentifier": {"type": record.context[0], "value": record.context[1]},
        "description": record.description,
        "requestedPermissions": sorted(record.permissions),
        "dateCreated": iso(record.created),
        "lastUseDate": iso(record.last_use) if record.last_use else None,
        "status": record.status,
        "statusDetails": [],
    }


def _own_token(rt: Runtime, principal: Principal | None, reference: str) -> KsefTokenRecord:
    assert principal is not None
    record = rt.state.contexts.get(principal.operation.context)
    token = record.tokens.get(reference) if record is not None else None
    if token is None:
        raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"no KSeF token {reference} here"])
    return token


async def list_tokens(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /tokens``: the context's KSeF tokens, filtered by ``status`` (repeatable), ``description`` and author."""
    assert principal is not None
    record = rt.state.contexts.get(principal.operation.context)
    statuses = set(request.query.getall("status", []))
    text = request.query.get("description", "").lower()
    author = request.query.get("authorIdentifier", "")
    author_type = request.query.get("authorIdentifierType")
    items = [
        _token_json(t)
        for t in (record.tokens.values() if record is not None else ())
        if (not statuses or t.status in statuses)
        and text in t.description.lower()
        and (t.author is None or author in t.author[1])
        and (author_type is None or (t.author is not None and t.author[0] == author_type))
    ]
    page, token = paged(rt, request, f"tokens:{principal.operation.context}", items, low=10, high=100)
    return web.json_response({"continuationToken": token, "tokens": page})


async def get_token(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /tokens/{referenceNumber}``."""
    return web.json_response(_token_json(_own_token(rt, principal, request.match_info["referenceNumber"])))


async def revoke_token(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``DELETE /tokens/{referenceNumber}``: later logins with it end with 450, refreshes of its sessions with 21301."""
    _own_token(rt, principal, request.match_info["referenceNumber"]).status = "Revoked"
    return web.Response(status=204)


async def rate_limits(rt: Runtime, _request: web.Request, _principal: Principal | None, _body: Any) -> web.Response:
    """``GET /rate-limits``: the limits in force (``EffectiveApiRateLimits``)."""
    values = {
        group: {"perSecond": _wire(lim.per_second), "perMinute": _wire(lim.per_minute), "perHour": _wire(lim.per_hour)}
        for group, lim in rt.limiter.effective().items()
    }
    return web.json_response(values)


def _wire(limit: int | None) -> int:
    """A window's limit as ``EffectiveApiRateLimitValues`` carries it: -1 for a window that is not limited."""
    return -1 if limit is None else limit


async def testdata_rate_limits(
    rt: Runtime, _request: web.Request, _principal: Principal | None, body: Any
) -> web.Response:
    """``POST /testdata/rate-limits``: custom values for the 13 groups of ``ApiRateLimitsOverride``."""
    groups = req(body, "rateLimits", dict)
    limits = {}
    for group in OVERRIDABLE_GROUPS:
        value = req(groups, group, dict)
        numbers = [req(value, name, int) for name in ("perSecond", "perMinute", "perHour")]
        if any(n < 1 for n in numbers):
            raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"{group}: limits must be >= 1"])
        limits[group] = WindowLimits(*numbers)
    rt.limiter.set_limits(limits)
    return web.Response(status=200)


async def testdata_rate_limits_delete(
    rt: Runtime, _request: web.Request, _principal: Principal | None, _body: Any
) -> web.Response:
    """``DELETE /testdata/rate-limits``: back to the environment's defaults (the spec's values)."""
    rt.limiter.production()
    return web.Response(status=200)


async def testdata_rate_limits_production(
    rt: Runtime, _request: web.Request, _principal: Principal | None, _body: Any
) -> web.Response:
    """``POST /testdata/rate-limits/production``: the production values."""
    rt.limiter.production()
    return web.Response(status=200)


async def testdata_block(rt: Runtime, request: web.Request, _principal: Principal | None, body: Any) -> web.Response:
    """``POST /testdata/context/block`` and ``/unblock``: later logins in the context end with status 480."""
    ident = req(body, "contextIdentifier", dict)
    key: ContextKey = (req(ident, "type", str), req(ident, "value", str))
    record = rt.state.contexts.get(key)
    if record is None:
        record = ContextRecord(key)
        rt.state.contexts[key] = record
    record.blocked = request.path.endswith("/block")
    return web.Response(status=200)


async def testdata_permissions(
    rt: Runtime, request: web.Request, _principal: Principal | None, body: Any
) -> web.Response:
    """``POST /testdata/permissions`` and ``/revoke``: grant (or take) permissions of a person/entity in a context."""
    ctx = req(body, "contextIdentifier", dict)
    who = req(body, "authorizedIdentifier", dict)
    context: ContextKey = (req(ctx, "type", str), req(ctx, "value", str))
    key = (context, req(who, "type", str), req(who, "value", str))
    if request.path.endswith("/revoke"):
        rt.state.grants.pop(key, None)
    else:
        granted = {req(p, "permissionType", str) for p in req(body, "permissions", list)}
        rt.state.grants[key] = rt.state.grants.get(key, frozenset()) | granted
    return web.Response(status=200)
