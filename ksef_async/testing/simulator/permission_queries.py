"""The permission queries: grants (personal, persons, subunits, entities, authorizations, EU entities) and roles."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ksef_async.testing.simulator.permission_records import (
    _PERSON_SCOPES,
    _ROLE_DESCRIPTIONS,
    _context,
    _day,
    _ident,
    _invalid,
    _nip,
    _opt_pair,
    _provides,
    _roles,
    _testdata_grants,
    _who,
)
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import ContextKey, PermissionGrant, iso

__all__ = [
    "HANDLERS",
    "query_authorizations",
    "query_entities",
    "query_entity_roles",
    "query_eu_entities",
    "query_personal",
    "query_persons",
    "query_subordinate_roles",
    "query_subunits",
]


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
    "post_permissions_query_personal_grants": query_personal,
    "post_permissions_query_persons_grants": query_persons,
    "post_permissions_query_subunits_grants": query_subunits,
    "post_permissions_query_entities_grants": query_entities,
    "get_permissions_query_entities_roles": query_entity_roles,
    "post_permissions_query_subordinate_entities_roles": query_subordinate_roles,
    "post_permissions_query_authorizations_grants": query_authorizations,
    "post_permissions_query_eu_entities_grants": query_eu_entities,
}
"""Handlers by operation id of the permission and role queries."""
