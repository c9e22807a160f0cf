"""Permission changes: the seven grant endpoints, the two revocations, operation status and attachment consent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from ksef_async.core.identifiers import is_valid_internal_id
from ksef_async.testing.simulator.permission_records import (
    _AUTHORIZATION_SCOPES,
    _EU_ADMIN_SCOPES,
    _EU_INVOICE_SCOPES,
    _INVOICE_SCOPES,
    _PERSON_SCOPES,
    _STATUS,
    OPERATION_RETENTION,
    _context,
    _description,
    _eu_entity_details,
    _invalid,
    _nip,
    _operation,
    _pair,
    _person_details,
    _record,
    _Refused,
    _roles,
    _sync,
    _testdata_grants,
)
from ksef_async.testing.simulator.problems import gone
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import ContextKey

__all__ = ["HANDLERS", "attachment_status", "operation_status", "revoke_authorization", "revoke_common"]


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
}
"""Handlers by operation id of the grant, revocation and status endpoints."""
