"""Permission records: the grant store, subject details, roles, what grants give at login and operation outcomes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import web

from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import ContextKey, PermissionGrant, PermissionOperation, SimState

__all__ = ["OPERATION_RETENTION", "effective_grants"]


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
