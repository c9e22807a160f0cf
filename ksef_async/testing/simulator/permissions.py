"""Permission endpoints: grants, revocations, operation status, attachment consent and the eight queries.

A grant is checked when it arrives and recorded as one `PermissionGrant` per permission type; its operation
(``...-EG-...``) shows status 100 for ``processing_delay`` seconds, then 200 or the spec's failure code (410 wrong
identifier relation, 430 the context lacks the role, 440 a relation that does not allow it, 450 wrong context or
identifier type). Granted permissions are mirrored into ``state.grants``, which the XAdES login reads: a person or
entity granted ``InvoiceWrite`` in a context logs in there with it, and after revocation its next login lacks it
(tokens already issued keep theirs until ``exp``, as in KSeF). Grants from ``/testdata/permissions`` show up in the
queries as granted by ``System`` and can be revoked like the others.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web

from ksef_async.core.identifiers import is_valid_internal_id
from ksef_async.testing.simulator.problems import ApiFailure, gone
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.sessions import opt, req
from ksef_async.testing.simulator.state import ContextKey, PermissionGrant, PermissionOperation, SimState, iso

__all__ = ["HANDLERS", "OPERATION_RETENTION", "effective_grants"]

OPERATION_RETENTION = 30 * 24 * 3600.0
"""Seconds a grant or revocation status stays readable (spec: 30 days); afterwards 410."""

_INVALID = "Błąd walidacji danych wejściowych."
_STATUS = {
    100: "Operacja przyjęta do realizacji",
    200: "Operacja zakończona sukcesem",
    400: "Operacja zakończona niepowodzeniem",
    410: "Podane identyfikatory są niezgodne lub pozostają w niewłaściwej relacji",
    420: "Użyte poświadczenia nie mają uprawnień do wykonania tej operacji",
    430: "Kontekst identyfikatora nie odpowiada wymaganej roli lub uprawnieniom",
    440: "Operacja niedozwolona dla wskazanych powiązań identyfikatorów",
    450: "Operacja niedozwolona dla wskazanego identyfikatora lub jego typu",
}
_PERSON_SCOPES = frozenset(
    {
        "CredentialsManage",
        "CredentialsRead",
        "InvoiceWrite",
        "InvoiceRead",
        "Introspection",
        "SubunitManage",
        "EnforcementOperations",
        "CollectiveIdentifierManage",
    }
)
_INVOICE_SCOPES = frozenset({"InvoiceWrite", "InvoiceRead", "CollectiveIdentifierManage"})
_EU_INVOICE_SCOPES = frozenset({"InvoiceWrite", "InvoiceRead"})  # EuEntityPermissionType has no CI permission
_AUTHORIZATION_SCOPES = frozenset({"SelfInvoicing", "RRInvoicing", "TaxRepresentative", "PefInvoicing"})
_EU_ADMIN_SCOPES = ("VatUeManage", "InvoiceWrite", "InvoiceRead", "Introspection")
_ROLE_OF_SUBJECT = {
    "EnforcementAuthority": "EnforcementAuthority",
    "VatGroup": "VatGroupUnit",
    "JST": "LocalGovernmentUnit",
}
_ROLE_DESCRIPTIONS = {
    "CourtBailiff": "Komornik sądowy",
    "EnforcementAuthority": "Organ egzekucyjny",
    "LocalGovernmentUnit": "Nadrzędna JST",
    "LocalGovernmentSubUnit": "Podrzędna JST",
    "VatGroupUnit": "Grupa VAT",
    "VatGroupSubUnit": "Członek grupy VAT",
}
_TESTDATA_DESCRIPTION = "Uprawnienie nadane przez dane testowe"
_GrantKey = tuple[ContextKey, str, str]


class _Refused(Exception):  # noqa: N818 - an operation outcome, not a programming error
    """The grant is well-formed but KSeF refuses it: the operation ends with ``code``."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _invalid(detail: str) -> ApiFailure:
    return ApiFailure(400, 21405, _INVALID, [detail])


def _ident(value: tuple[str, str]) -> dict[str, str]:
    return {"type": value[0], "value": value[1]}


def _pair(body: Any, name: str, types: Iterable[str]) -> tuple[str, str]:
    ident = req(body, name, dict)
    kind = req(ident, "type", str)
    if kind not in types:
        raise _invalid(f"{name}.type {kind!r} not allowed here")
    return kind, req(ident, "value", str)


def _opt_pair(body: Any, name: str) -> tuple[str, str] | None:
    ident = opt(body, name, dict)
    return None if ident is None else (req(ident, "type", str), req(ident, "value", str))


def _description(body: Any, name: str = "description") -> str:
    text: str = req(body, name, str)
    if not 5 <= len(text) <= 256:  # noqa: PLR2004 - the spec's bounds
        raise _invalid(f"'{name}' must have 5..256 characters")
    return text


def _nip(context: ContextKey) -> str:
    return context[1].split("-")[0]


def _who(rt: Runtime, principal: Principal) -> tuple[str, str]:
    """The authenticated person or entity: the certificate identity, or a KSeF token's author."""
    op = principal.operation
    if op.identity is not None:
        return op.identity
    token = next((t for t in rt.state.tokens.values() if t.reference_number == op.token_reference), None)
    if token is not None and token.author is not None:
        return token.author
    return "Nip", _nip(op.context)


def _context(principal: Principal | None) -> ContextKey:
    assert principal is not None
    return principal.operation.context


# -- subject details ---------------------------------------------------------------------------------------------


def _person_details(details: Any) -> dict[str, Any] | None:
    """``PermissionsSubjectPersonDetails`` from a grant's ``subjectDetails`` (None for an entity)."""
    kind = req(details, "subjectDetailsType", str)
    member = {
        "PersonByIdentifier": "personById",
        "PersonByFingerprintWithIdentifier": "personByFpWithId",
        "PersonByFingerprintWithoutIdentifier": "personByFpNoId",
    }.get(kind)
    if member is None:
        return None
    person = req(details, member, dict)
    out: dict[str, Any] = {
        "subjectDetailsType": kind,
        "firstName": req(person, "firstName", str),
        "lastName": req(person, "lastName", str),
    }
    if member == "personByFpWithId":
        out["personIdentifier"] = req(person, "identifier", dict)
    elif member == "personByFpNoId":
        out["birthDate"] = req(person, "birthDate", str)
        out["idDocument"] = req(person, "idDocument", dict)
    return out


def _eu_entity_details(details: Any) -> dict[str, Any] | None:
    if req(details, "subjectDetailsType", str) != "EntityByFingerprint":
        return None
    entity = req(details, "entityByFp", dict)
    return {
        "subjectDetailsType": "EntityByFingerprint",
        "fullName": req(entity, "fullName", str),
        "address": req(entity, "address", str),
    }


# -- roles -------------------------------------------------------------------------------------------------------


def _day(rt: Runtime) -> dt.datetime:
    # Roles come from the test-data registry, which keeps no dates: today's midnight is stable within a run.
    now = rt.state.clock.now_dt()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _roles(state: SimState, nip: str) -> list[tuple[str, str | None]]:
    """The roles of ``nip`` as ``(role, parent NIP or None)``, from ``/testdata/subject`` and ``/testdata/person``."""
    roles: list[tuple[str, str | None]] = []
    subject_type = state.subjects.get(nip)
    if subject_type in _ROLE_OF_SUBJECT:
        roles.append((_ROLE_OF_SUBJECT[subject_type], None))
    if any(p.nip == nip and p.is_bailiff for p in state.persons.values()):
        roles.append(("CourtBailiff", None))
    for parent, units in state.subunits.items():
        if nip in units:
            sub = "VatGroupSubUnit" if state.subjects.get(parent) == "VatGroup" else "LocalGovernmentSubUnit"
            roles.append((sub, parent))
    return roles


# -- effective permissions ---------------------------------------------------------------------------------------


def _provides(state: SimState, grant: PermissionGrant) -> Iterator[tuple[_GrantKey, str]]:
    """What ``grant`` lets its holder do at login: ((context, identifier type, value), permission) pairs."""
    if grant.kind == "authorization":
        return  # entity authorizations (self-invoicing...) are not login permissions
    if grant.kind == "indirect":
        if grant.target is not None and grant.target[0] != "AllPartners" and grant.target[1] is not None:
            yield ((grant.target[0], grant.target[1]), *grant.subject), grant.scope
            return
        # AllPartners: every client that let the intermediary pass this permission on.
        for other in state.permission_grants.values():
            if (
                other.kind == "entity"
                and other.can_delegate
                and other.scope == grant.scope
                and other.subject == ("Nip", _nip(grant.grantor))
            ):
                yield (other.grantor, *grant.subject), grant.scope
        return
    yield (grant.context, *grant.subject), grant.scope


def effective_grants(state: SimState) -> set[tuple[_GrantKey, str]]:
    """Every ((context, identifier type, value), permission) the recorded grants give."""
    return {item for grant in state.permission_grants.values() for item in _provides(state, grant)}


def _sync(state: SimState) -> None:
    """Mirror the grant records into ``state.grants`` (read at login), leaving test-data grants alone."""
    new = effective_grants(state)
    for key, scope in state.permission_derived - new:
        remaining = state.grants.get(key, frozenset()) - {scope}
        if remaining:
            state.grants[key] = remaining
        else:
            state.grants.pop(key, None)
    for key, scope in new - state.permission_derived:
        state.grants[key] = state.grants.get(key, frozenset()) | {scope}
    state.permission_derived = new


def _testdata_id(key: _GrantKey, scope: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ksef-sim:testdata:{key[0][0]}:{key[0][1]}:{key[1]}:{key[2]}:{scope}"))


def _testdata_grants(rt: Runtime) -> list[PermissionGrant]:
    """``/testdata/permissions`` grants not backed by a record, as records authored by ``System``."""
    out = []
    for key, scopes in rt.state.grants.items():
        for scope in sorted(scopes):
            if (key, scope) in rt.state.permission_derived or scope not in _PERSON_SCOPES:
                continue
            out.append(
                PermissionGrant(
                    id=_testdata_id(key, scope),
                    kind="testdata",
                    grantor=key[0],
                    context=key[0],
                    author=("System", ""),
                    subject=(key[1], key[2]),
                    scope=scope,
                    description=_TESTDATA_DESCRIPTION,
                    started=_day(rt),
                )
            )
    return out


# -- operations --------------------------------------------------------------------------------------------------


def _operation(rt: Runtime, principal: Principal | None, code: int, details: list[str]) -> web.Response:
    reference = rt.reference("EG")
    rt.state.permission_operations[reference] = PermissionOperation(
        reference, _context(principal), rt.state.clock.now(), code, _STATUS[code], details
    )
    return web.json_response({"referenceNumber": reference}, status=202)


def _record(
    rt: Runtime,
    principal: Principal | None,
    *,
    kind: str,
    context: ContextKey,
    subject: tuple[str, str],
    scopes: Iterable[tuple[str, bool]],
    description: str,
    **fields: Any,
) -> None:
    """Record one grant per ``(scope, canDelegate)``; a scope already granted to the subject keeps its record."""
    assert principal is not None
    for scope, can_delegate in scopes:
        existing = next(
            (
                g
                for g in rt.state.permission_grants.values()
                if g.kind == kind
                and g.context == context
                and g.subject == subject
                and g.scope == scope
                and g.target == fields.get("target")
            ),
            None,
        )
        if existing is not None:
            continue
        grant = PermissionGrant(
            id=str(uuid.UUID(int=rt.state.rng.getrandbits(128), version=4)),
            kind=kind,
            grantor=principal.operation.context,
            context=context,
            author=_who(rt, principal),
            subject=subject,
            scope=scope,
            description=description,
            started=rt.state.clock.now_dt(),
            can_delegate=can_delegate,
            **fields,
        )
        rt.state.permission_grants[grant.id] = grant
    _sync(rt.state)


def _granting(
    apply: Callable[[Runtime, Principal | None, Any], None],
) -> Callable[[Runtime, web.Request, Principal | None, Any], Any]:
    """Wrap a grant's checks and effect: 202 with an operation that ends 200, or with the refusal's code."""

    async def handler(rt: Runtime, _request: web.Request, principal: Principal | None, body: Any) -> web.Response:
        try:
            apply(rt, principal, body)
        except _Refused as refused:
            return _operation(rt, principal, refused.code, [refused.detail])
        return _operation(rt, principal, 200, [])

    handler.__doc__ = apply.__doc__
    return handler


def _require_context(context: ContextKey, types: tuple[str, ...]) -> None:
    if context[0] not in types:
        raise _Refused(450, f"not allowed in a {context[0]} context")


def _grant_persons(rt: Runtime, principal: Principal | None, body: Any) -> None:
    """``POST /permissions/persons/grants``: permissions of a person in the current context."""
    subject = _pair(body, "subjectIdentifier", ("Nip", "Pesel", "Fingerprint"))
    permissions = req(body, "permissions", list)
    description = _description(body)
    details = _person_details(req(body, "subjectDetails", dict))
    if (
        not permissions
        or any(p not in _PERSON_SCOPES for p in permissions)
        or len(set(permissions)) != len(permissions)
    ):
        raise _invalid(f"permissions {permissions!r}: each of {sorted(_PERSON_SCOPES)} at most once")
    context = _context(principal)
    _require_context(context, ("Nip", "InternalId"))
    if "EnforcementOperations" in permissions:
        roles = {role for role, _ in _roles(rt.state, _nip(context))}
        if not roles & {"EnforcementAuthority", "CourtBailiff"}:
            raise _Refused(430, "EnforcementOperations needs the EnforcementAuthority or CourtBailiff role")
    _record(
        rt,
        principal,
        kind="person",
        context=context,
        subject=subject,
        scopes=[(p, False) for p in permissions],
        description=description,
        person_details=details,
    )


def _grant_entities(rt: Runtime, principal: Principal | None, body: Any) -> None:
    """``POST /permissions/entities/grants``: invoice permissions of another entity (NIP) in the current context."""
    subject = _pair(body, "subjectIdentifier", ("Nip",))
    permissions = req(body, "permissions", list)
    description = _description(body)
    full_name = req(req(body, "subjectDetails", dict), "fullName", str)
    scopes = []
    for item in permissions:
        scope = req(item, "type", str)
        if scope not in _INVOICE_SCOPES:
            raise _invalid(f"entity permission {scope!r}")
        scopes.append((scope, bool(opt(item, "canDelegate", bool, default=False))))
    context = _context(principal)
    _require_context(context, ("Nip", "InternalId"))
    if subject[1] == _nip(context):
        raise _Refused(440, "an entity cannot be granted permissions in its own context")
    _record(
        rt,
        principal,
        kind="entity",
        context=context,
        subject=subject,
        scopes=scopes,
        description=description,
        entity_details={"subjectDetailsType": "EntityByIdentifier", "fullName": full_name},
    )


def _grant_authorization(rt: Runtime, principal: Principal | None, body: Any) -> None:
    """``POST /permissions/authorizations/grants``: one entity authorization (self-invoicing, RR, PEF...)."""
    subject = _pair(body, "subjectIdentifier", ("Nip", "PeppolId"))
    scope = req(body, "permission", str)
    description = _description(body)
    full_name = req(req(body, "subjectDetails", dict), "fullName", str)
    if scope not in _AUTHORIZATION_SCOPES:
        raise _invalid(f"permission {scope!r}")
    context = _context(principal)
    _require_context(context, ("Nip",))
    if subject == ("Nip", context[1]):
        raise _Refused(440, "an entity cannot authorize itself")
    _record(
        rt,
        principal,
        kind="authorization",
        context=context,
        subject=subject,
        scopes=[(scope, False)],
        description=description,
        entity_details={"subjectDetailsType": "EntityByIdentifier", "fullName": full_name},
    )


def _grant_indirect(rt: Runtime, principal: Principal | None, body: Any) -> None:
    """``POST /permissions/indirect/grants``: a person handles the invoices of the context's clients."""
    subject = _pair(body, "subjectIdentifier", ("Nip", "Pesel", "Fingerprint"))
    permissions = req(body, "permissions", list)
    description = _description(body)
    details = _person_details(req(body, "subjectDetails", dict))
    if not permissions or any(p not in _INVOICE_SCOPES for p in permissions):
        raise _invalid(f"indirect permissions {permissions!r}")
    target_body = opt(body, "targetIdentifier", dict)
    target: tuple[str, str | None] = ("AllPartners", None)
    if target_body is not None:
        kind = req(target_body, "type", str)
        if kind not in ("Nip", "AllPartners", "InternalId"):
            raise _invalid(f"targetIdentifier.type {kind!r}")
        target = (kind, None) if kind == "AllPartners" else (kind, req(target_body, "value", str))
    context = _context(principal)
    _require_context(context, ("Nip",))
    if target[1] is not None:
        client_nip = target[1].split("-")[0]
        delegated = any(
            g.kind == "entity" and g.can_delegate and g.grantor[1].split("-")[0] == client_nip
            for g in rt.state.permission_grants.values()
            if g.subject == ("Nip", context[1])
        )
        if not delegated:
            raise _Refused(440, f"{target[1]} has not let this entity pass a permission on (canDelegate)")
    _record(
        rt,
        principal,
        kind="indirect",
        context=context,
        subject=subject,
        scopes=[(p, False) for p in permissions],
        description=description,
        person_details=details,
        target=target,
    )


def _grant_subunit(rt: Runtime, principal: Principal | None, body: Any) -> None:
    """``POST /permissions/subunits/grants``: an administrator (CredentialsManage) of a subunit or subordinate."""
    subject = _pair(body, "subjectIdentifier", ("Nip", "Pesel", "Fingerprint"))
    unit = _pair(body, "contextIdentifier", ("InternalId", "Nip"))
    description = _description(body)
    details = _person_details(req(body, "subjectDetails", dict))
    name = opt(body, "subunitName", str)
    context = _context(principal)
    _require_context(context, ("Nip",))
    if unit[0] == "InternalId":
        if not is_valid_internal_id(unit[1]):
            raise _invalid(f"contextIdentifier {unit[1]!r} is not a valid InternalId (NIP-5 digits, checksum)")
        if _nip(unit) != context[1]:
            raise _Refused(410, f"{unit[1]} is not an internal unit of {context[1]}")
        if name is None:
            raise _invalid("'subunitName' is required for a new internal unit")
    else:
        roles = {role for role, _ in _roles(rt.state, context[1])}
        if not roles & {"LocalGovernmentUnit", "VatGroupUnit"}:
            raise _Refused(430, "the context is neither a parent JST nor a VAT group")
        if unit[1] not in rt.state.subunits.get(context[1], {}):
            raise _Refused(410, f"{unit[1]} is not subordinate to {context[1]}")
    fields: dict[str, Any] = {"subunitName": name} if name is not None else {}
    _record(
        rt,
        principal,
        kind="subunit",
        context=unit,
        subject=subject,
        scopes=[("CredentialsManage", False)],
        description=description,
        person_details=details,
        extra=fields,
    )


def _grant_eu_admin(rt: Runtime, principal: Principal | None, body: Any) -> None:
    """``POST /permissions/eu-entities/administration/grants``: the administrator of an EU entity (NIP-VAT UE)."""
    subject = _pair(body, "subjectIdentifier", ("Fingerprint",))
    eu_context = _pair(body, "contextIdentifier", ("NipVatUe",))
    description = _description(body)
    eu_name = _description(body, "euEntityName")
    subject_details = req(body, "subjectDetails", dict)
    eu_details = req(body, "euEntityDetails", dict)
    eu_details = {"fullName": req(eu_details, "fullName", str), "address": req(eu_details, "address", str)}
    context = _context(principal)
    _require_context(context, ("Nip",))
    if _nip(eu_context) != context[1] or "-" not in eu_context[1]:
        raise _Refused(410, f"{eu_context[1]} does not start with the context NIP {context[1]}")
    _record(
        rt,
        principal,
        kind="euAdmin",
        context=eu_context,
        subject=subject,
        scopes=[(scope, False) for scope in _EU_ADMIN_SCOPES],
        description=description,
        person_details=_person_details(subject_details),
        entity_details=_eu_entity_details(subject_details),
        extra={"euEntityName": eu_name, "euEntityDetails": eu_details},
    )


def _grant_eu_entity(rt: Runtime, principal: Principal | None, body: Any) -> None:
    """``POST /permissions/eu-entities/grants``: a representative of the current EU entity (NIP-VAT UE) context."""
    subject = _pair(body, "subjectIdentifier", ("Fingerprint",))
    permissions = req(body, "permissions", list)
    description = _description(body)
    subject_details = req(body, "subjectDetails", dict)
    if not permissions or any(p not in _EU_INVOICE_SCOPES for p in permissions):
        raise _invalid(f"permissions {permissions!r}")
    context = _context(principal)
    _require_context(context, ("NipVatUe",))
    admin = next((g for g in rt.state.permission_grants.values() if g.kind == "euAdmin" and g.context == context), None)
    extra = {} if admin is None else {k: admin.extra[k] for k in ("euEntityName", "euEntityDetails")}
    _record(
        rt,
        principal,
        kind="euEntity",
        context=context,
        subject=subject,
        scopes=[(p, False) for p in permissions],
        description=description,
        person_details=_person_details(subject_details),
        entity_details=_eu_entity_details(subject_details),
        extra=extra,
    )


async def _revoke(
    rt: Runtime, request: web.Request, principal: Principal | None, *, authorization: bool
) -> web.Response:
    permission_id = request.match_info["permissionId"]
    context = _context(principal)
    grant = rt.state.permission_grants.get(permission_id)
    if (
        grant is not None
        and (grant.kind == "authorization") == authorization
        and context in (grant.grantor, grant.context)
    ):
        del rt.state.permission_grants[permission_id]
        _sync(rt.state)
        return _operation(rt, principal, 200, [])
    if not authorization:
        for testdata in _testdata_grants(rt):
            if testdata.id == permission_id and testdata.context == context:
                key = (testdata.context, *testdata.subject)
                remaining = rt.state.grants[key] - {testdata.scope}
                if remaining:
                    rt.state.grants[key] = remaining
                else:
                    del rt.state.grants[key]
                return _operation(rt, principal, 200, [])
    return _operation(rt, principal, 400, [f"no permission {permission_id} revocable in this context"])


async def revoke_common(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``DELETE /permissions/common/grants/{permissionId}``: any grant but an entity authorization."""
    return await _revoke(rt, request, principal, authorization=False)


async def revoke_authorization(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``DELETE /permissions/authorizations/grants/{permissionId}``: an entity authorization."""
    return await _revoke(rt, request, principal, authorization=True)


async def operation_status(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /permissions/operations/{referenceNumber}``: 100 for ``processing_delay``, then the outcome; 30 days."""
    reference = request.match_info["referenceNumber"]
    op = rt.state.permission_operations.get(reference)
    if op is None or op.context != _context(principal):
        raise _invalid(f"no permission operation {reference} in this context")
    age = rt.state.clock.now() - op.started
    if age > OPERATION_RETENTION:
        raise gone(f"the status of {reference} is no longer kept (30 days)")
    if age < rt.config.processing_delay:
        return web.json_response({"status": {"code": 100, "description": _STATUS[100]}})
    status: dict[str, Any] = {"code": op.code, "description": op.description}
    if op.details:
        status["details"] = op.details
    return web.json_response({"status": status})


async def attachment_status(
    rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /permissions/attachments/status``: the ``/testdata/attachment`` consent of the context's NIP."""
    return web.json_response({"isAttachmentAllowed": _nip(_context(principal)) in rt.state.attachments_allowed})


# -- queries -----------------------------------------------------------------------------------------------------


def _query_int(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(f"{name} {raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        raise _invalid(f"{name} {value} outside {low}..{high if high is not None else ''}")
    return value


def _paged(request: web.Request, items: list[PermissionGrant]) -> tuple[list[PermissionGrant], bool]:
    """One page by ``pageOffset`` (page number) and ``pageSize`` (10..100), sorted startDate desc, id asc."""
    offset = _query_int(request, "pageOffset", 0, 0, None)
    size = _query_int(request, "pageSize", 10, 10, 100)
    ordered = sorted(items, key=lambda g: (-g.started.timestamp(), g.id))
    start = offset * size
    return ordered[start : start + size], start + size < len(ordered)


def _person_item(grant: PermissionGrant) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": grant.id,
        "authorizedIdentifier": _ident(grant.subject),
        "authorIdentifier": {"type": "System"} if grant.author[0] == "System" else _ident(grant.author),
        "permissionScope": grant.scope,
        "description": grant.description,
        "permissionState": "Active",
        "startDate": iso(grant.started),
        "canDelegate": grant.can_delegate,
    }
    if grant.context[0] in ("Nip", "InternalId"):
        item["contextIdentifier"] = _ident(grant.context)
    if grant.target is not None:
        item["targetIdentifier"] = {"type": grant.target[0]}
        if grant.target[1] is not None:
            item["targetIdentifier"]["value"] = grant.target[1]
    if grant.person_details is not None:
        item["subjectPersonDetails"] = grant.person_details
    if grant.entity_details is not None:
        item["subjectEntityDetails"] = grant.entity_details
    return item


def _matches(value: tuple[str, str | None] | None, wanted: tuple[str, str] | None) -> bool:
    return wanted is None or (value is not None and value[0] == wanted[0] and value[1] == wanted[1])


def _types_filter(body: Any) -> set[str]:
    return set(opt(body, "permissionTypes", list, []))


def _state_ok(body: Any) -> bool:
    # Revoked grants are deleted, so every listed grant is Active.
    return opt(body, "permissionState", str) in (None, "Active")


async def query_personal(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /permissions/query/personal/grants``: the caller's own permissions in the current context."""
    assert principal is not None
    context = _context(principal)
    who = _who(rt, principal)
    key = (context, *who)
    person = rt.state.persons.get(who[1]) if who[0] == "Pesel" else None
    owner = who == ("Nip", _nip(context)) or (person is not None and person.nip == _nip(context))
    types, want_context, want_target = _types_filter(body), _opt_pair(body, "contextIdentifier"), None
    target_body = opt(body, "targetIdentifier", dict)
    if target_body is not None:
        want_target = (req(target_body, "type", str), target_body.get("value"))
    mine = [
        g
        for g in list(rt.state.permission_grants.values()) + _testdata_grants(rt)
        if g.kind != "authorization"
        and (
            (g.kind == "testdata" and (g.context, *g.subject) == key)
            or any(k == key for k, _ in _provides(rt.state, g))
            # An owner also sees what other entities granted the context's entity.
            or (owner and g.kind == "entity" and g.subject == ("Nip", _nip(context)))
        )
    ]
    items = [
        g
        for g in mine
        if (not types or g.scope in types)
        and _state_ok(body)
        and _matches(g.context if g.context[0] in ("Nip", "InternalId") else None, want_context)
        and (want_target is None or g.target == want_target)
    ]
    page, more = _paged(request, items)
    out = []
    for grant in page:
        item = _person_item(grant)
        del item["authorIdentifier"]
        out.append(item)
    result: dict[str, Any] = {"permissions": out, "hasMore": more}
    if owner:
        result["ownerPermissions"] = _owner_permissions(rt, context)
    return web.json_response(result)


def _owner_permissions(rt: Runtime, context: ContextKey) -> list[str]:
    """``ownerPermissions`` of the context's owner: every ``OwnerPermissionScope`` its entity's roles allow."""
    scopes = [
        "CredentialsManage",
        "CredentialsRead",
        "InvoiceWrite",
        "InvoiceRead",
        "Introspection",
        "SubunitManage",
        "CollectiveIdentifierManage",
    ]
    roles = {role for role, _ in _roles(rt.state, _nip(context))}
    if roles & {"EnforcementAuthority", "CourtBailiff"}:
        scopes.insert(6, "EnforcementOperations")
    return scopes


async def query_persons(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /permissions/query/persons/grants``: in force in the context, or granted there by the caller."""
    assert principal is not None
    context = _context(principal)
    query_type = req(body, "queryType", str)
    if query_type == "PermissionsInCurrentContext":
        pool = [
            g
            for g in rt.state.permission_grants.values()
            if (g.kind in ("person", "entity", "subunit") and g.context == context)
            or (g.kind == "indirect" and g.grantor == context)
        ] + [g for g in _testdata_grants(rt) if g.context == context]
    elif query_type == "PermissionsGrantedInCurrentContext":
        who = _who(rt, principal)
        pool = [
            g
            for g in rt.state.permission_grants.values()
            if g.kind in ("person", "entity", "indirect", "subunit") and g.grantor == context and g.author == who
        ]
    else:
        raise _invalid(f"queryType {query_type!r}")
    types = _types_filter(body)
    author, authorized = _opt_pair(body, "authorIdentifier"), _opt_pair(body, "authorizedIdentifier")
    want_context = _opt_pair(body, "contextIdentifier")
    target_body = opt(body, "targetIdentifier", dict)
    items = [
        g
        for g in pool
        if g.scope in _PERSON_SCOPES
        and (not types or g.scope in types)
        and _state_ok(body)
        and _matches(g.author, author)
        and _matches(g.subject, authorized)
        and _matches(g.context, want_context)
        and (target_body is None or g.target == (req(target_body, "type", str), target_body.get("value")))
    ]
    page, more = _paged(request, items)
    return web.json_response({"permissions": [_person_item(g) for g in page], "hasMore": more})


async def query_subunits(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /permissions/query/subunits/grants``: administrators of subunits granted from the current context."""
    context = _context(principal)
    unit = _opt_pair(body, "subunitIdentifier")
    items = [
        g
        for g in rt.state.permission_grants.values()
        if g.kind == "subunit" and g.grantor == context and _matches(g.context, unit)
    ]
    page, more = _paged(request, items)
    out = []
    for grant in page:
        item: dict[str, Any] = {
            "id": grant.id,
            "authorizedIdentifier": _ident(grant.subject),
            "subunitIdentifier": _ident(grant.context),
            "authorIdentifier": _ident(grant.author),
            "permissionScope": grant.scope,
            "description": grant.description,
            "startDate": iso(grant.started),
        }
        if grant.person_details is not None:
            item["subjectPersonDetails"] = grant.person_details
        if "subunitName" in grant.extra:
            item["subunitName"] = grant.extra["subunitName"]
        out.append(item)
    return web.json_response({"permissions": out, "hasMore": more})


async def query_entities(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /permissions/query/entities/grants``: invoice permissions other entities gave the current context."""
    context = _context(principal)
    grantor = _opt_pair(body, "contextIdentifier")
    items = [
        g
        for g in rt.state.permission_grants.values()
        if g.kind == "entity" and g.subject == ("Nip", _nip(context)) and _matches(g.grantor, grantor)
    ]
    page, more = _paged(request, items)
    out = [
        {
            "id": g.id,
            "contextIdentifier": _ident(g.grantor),
            "permissionScope": g.scope,
            "description": g.description,
            "startDate": iso(g.started),
            "canDelegate": g.can_delegate,
        }
        for g in page
    ]
    return web.json_response({"permissions": out, "hasMore": more})


def _role_page(request: web.Request, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    offset = _query_int(request, "pageOffset", 0, 0, None)
    size = _query_int(request, "pageSize", 10, 10, 100)
    return rows[offset * size : (offset + 1) * size], (offset + 1) * size < len(rows)


async def query_entity_roles(
    rt: Runtime, request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``GET /permissions/query/entities/roles``: the roles of the context's NIP (test-data registry)."""
    start = iso(_day(rt))
    rows = []
    for role, parent in _roles(rt.state, _nip(_context(principal))):
        row: dict[str, Any] = {"role": role, "description": _ROLE_DESCRIPTIONS[role], "startDate": start}
        if parent is not None:
            row["parentEntityIdentifier"] = {"type": "Nip", "value": parent}
        rows.append(row)
    page, more = _role_page(request, rows)
    return web.json_response({"roles": page, "hasMore": more})


async def query_subordinate_roles(
    rt: Runtime, request: web.Request, principal: Principal | None, body: Any
) -> web.Response:
    """``POST /permissions/query/subordinate-entities/roles``: the subordinates of a parent JST or VAT group."""
    parent = _nip(_context(principal))
    wanted = _opt_pair(body, "subordinateEntityIdentifier")
    role = "VatGroupSubUnit" if rt.state.subjects.get(parent) == "VatGroup" else "LocalGovernmentSubUnit"
    start = iso(_day(rt))
    rows = [
        {
            "subordinateEntityIdentifier": {"type": "Nip", "value": nip},
            "role": role,
            "description": description,
            "startDate": start,
        }
        for nip, description in sorted(rt.state.subunits.get(parent, {}).items())
        if _matches(("Nip", nip), wanted)
    ]
    page, more = _role_page(request, rows)
    return web.json_response({"roles": page, "hasMore": more})


async def query_authorizations(
    rt: Runtime, request: web.Request, principal: Principal | None, body: Any
) -> web.Response:
    """``POST /permissions/query/authorizations/grants``: entity authorizations given (Granted) or received."""
    context = _context(principal)
    query_type = req(body, "queryType", str)
    types = _types_filter(body)
    if query_type == "Granted":
        wanted = _opt_pair(body, "authorizedIdentifier")
        pool = [g for g in rt.state.permission_grants.values() if g.grantor == context and _matches(g.subject, wanted)]
    elif query_type == "Received":
        wanted = _opt_pair(body, "authorizingIdentifier")
        pool = [
            g
            for g in rt.state.permission_grants.values()
            if g.subject == context and _matches(("Nip", _nip(g.grantor)), wanted)
        ]
    else:
        raise _invalid(f"queryType {query_type!r}")
    items = [g for g in pool if g.kind == "authorization" and (not types or g.scope in types)]
    page, more = _paged(request, items)
    out = []
    for grant in page:
        item: dict[str, Any] = {
            "id": grant.id,
            "authorIdentifier": _ident(grant.author),
            "authorizedEntityIdentifier": _ident(grant.subject),
            "authorizingEntityIdentifier": {"type": "Nip", "value": _nip(grant.grantor)},
            "authorizationScope": grant.scope,
            "description": grant.description,
            "startDate": iso(grant.started),
        }
        if grant.entity_details is not None:
            item["subjectEntityDetails"] = grant.entity_details
        out.append(item)
    return web.json_response({"authorizationGrants": out, "hasMore": more})


async def query_eu_entities(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /permissions/query/eu-entities/grants``: EU entity administrators (NIP context) or all (NIP-VAT UE)."""
    context = _context(principal)
    vat_ue = opt(body, "vatUeIdentifier", str)
    fingerprint = opt(body, "authorizedFingerprintIdentifier", str)
    types = _types_filter(body)
    if context[0] == "NipVatUe":
        pool = [
            g for g in rt.state.permission_grants.values() if g.kind in ("euAdmin", "euEntity") and g.context == context
        ]
    else:
        pool = [g for g in rt.state.permission_grants.values() if g.kind == "euAdmin" and g.grantor == context]
    items = [
        g
        for g in pool
        if (vat_ue is None or g.context[1].partition("-")[2] == vat_ue)
        and (fingerprint is None or g.subject[1] == fingerprint)
        and (not types or g.scope in types)
    ]
    page, more = _paged(request, items)
    out = []
    for grant in page:
        item: dict[str, Any] = {
            "id": grant.id,
            "authorIdentifier": _ident(grant.author),
            "vatUeIdentifier": grant.context[1].partition("-")[2],
            "euEntityName": grant.extra.get("euEntityName", "Podmiot unijny"),
            "authorizedFingerprintIdentifier": grant.subject[1],
            "permissionScope": grant.scope,
            "description": grant.description,
            "startDate": iso(grant.started),
        }
        if grant.person_details is not None:
            item["subjectPersonDetails"] = grant.person_details
        if grant.entity_details is not None:
            item["subjectEntityDetails"] = grant.entity_details
        if "euEntityDetails" in grant.extra:
            item["euEntityDetails"] = grant.extra["euEntityDetails"]
        out.append(item)
    return web.json_response({"permissions": out, "hasMore": more})


HANDLERS: dict[str, Any] = {
    "post_permissions_persons_grants": _granting(_grant_persons),
    "post_permissions_entities_grants": _granting(_grant_entities),
    "post_permissions_authorizations_grants": _granting(_grant_authorization),
    "post_permissions_indirect_grants": _granting(_grant_indirect),
    "post_permissions_subunits_grants": _granting(_grant_subunit),
    "post_permissions_eu_entities_administration_grants": _granting(_grant_eu_admin),
    "post_permissions_eu_entities_grants": _granting(_grant_eu_entity),
    "delete_permissions_common_grants_by_permission_id": revoke_common,
    "delete_permissions_authorizations_grants_by_permission_id": revoke_authorization,
    "get_permissions_operations_by_reference_number": operation_status,
    "get_permissions_attachments_status": attachment_status,
    "post_permissions_query_personal_grants": query_personal,
    "post_permissions_query_persons_grants": query_persons,
    "post_permissions_query_subunits_grants": query_subunits,
    "post_permissions_query_entities_grants": query_entities,
    "get_permissions_query_entities_roles": query_entity_roles,
    "post_permissions_query_subordinate_entities_roles": query_subordinate_roles,
    "post_permissions_query_authorizations_grants": query_authorizations,
    "post_permissions_query_eu_entities_grants": query_eu_entities,
}
"""Handlers by operation id (merged into the simulator's routing table)."""
