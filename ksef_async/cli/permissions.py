"""`ksef-async permissions list|grant|revoke`: read, grant and revoke the permissions of persons in a context."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_OK, Connection, run_async
from ksef_async.core.identifiers import is_valid_nip, is_valid_pesel
from ksef_async.errors import ConfigurationError
from ksef_async.models import (
    PersonByFingerprintWithIdentifierDetails,
    PersonDetails,
    PersonIdentifier,
    PersonPermission,
    PersonPermissionsGrantRequest,
    PersonPermissionsQueryRequest,
    PersonPermissionsQueryType,
    PersonPermissionsSubjectIdentifier,
    PersonPermissionSubjectDetails,
)

__all__ = ["grant", "list_permissions", "permissions_app", "revoke"]

PermissionName = Literal[
    "InvoiceWrite",
    "InvoiceRead",
    "CredentialsManage",
    "CredentialsRead",
    "Introspection",
    "SubunitManage",
    "EnforcementOperations",
    "CollectiveIdentifierManage",
]
"""The spec's ``PersonPermissionType`` values."""

permissions_app = App(name="permissions", help="List, grant and revoke permissions in a context.")
app.command(permissions_app)

_COLUMNS = ("ID", "PERMISSION", "SUBJECT", "CONTEXT", "AUTHOR", "DESCRIPTION")


def _ident(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value.type}:{value.value}" if value.value else str(value.type)


def _row(item: PersonPermission) -> dict[str, Any]:
    return {
        "id": item.id,
        "permission": str(item.permission_scope),
        "subject": _ident(item.authorized_identifier),
        "context": _ident(item.context_identifier),
        "target": _ident(item.target_identifier) if item.target_identifier is not None else None,
        "author": _ident(item.author_identifier),
        "description": item.description,
        "state": str(item.permission_state),
        "start_date": item.start_date.isoformat(),
        "can_delegate": item.can_delegate,
    }


@permissions_app.command(name="list")
def list_permissions(
    *,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    granted: Annotated[bool, Parameter(negative="")] = False,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
) -> int:
    """List the permissions of persons and entities in the context.

    Parameters
    ----------
    connection
        Where and how to log in.
    granted
        Only the permissions the logged-in person or entity granted here (default: all in force here).
    as_json
        Print JSON instead of a table.
    """
    query_type = (
        PersonPermissionsQueryType.PERMISSIONS_GRANTED_IN_CURRENT_CONTEXT
        if granted
        else PersonPermissionsQueryType.PERMISSIONS_IN_CURRENT_CONTEXT
    )
    return run_async(lambda: _list(connection, query_type), lambda rows: _print_rows(rows, as_json=as_json))


async def _list(connection: Connection, query_type: PersonPermissionsQueryType) -> list[dict[str, Any]]:
    async with connection.client() as client:
        request = PersonPermissionsQueryRequest(query_type=query_type)
        return [_row(item) async for item in client.permissions.query_persons(request, page_size=100)]


def _print_rows(rows: list[dict[str, Any]], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    table = [_COLUMNS] + [
        (r["id"], r["permission"], r["subject"], r["context"], r["author"], r["description"]) for r in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(_COLUMNS))]
    for line in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    print(f"{len(rows)} permission(s)")
    return EXIT_OK


def _subject(
    nip: str | None, pesel: str | None, fingerprint: str | None
) -> tuple[PersonPermissionsSubjectIdentifier, str]:
    given = [(kind, value) for kind, value in (("Nip", nip), ("Pesel", pesel), ("Fingerprint", fingerprint)) if value]
    if len(given) != 1:
        raise ConfigurationError("give exactly one of --subject-nip, --subject-pesel and --subject-fingerprint")
    kind, value = given[0]
    if kind == "Nip" and not is_valid_nip(value):
        raise ConfigurationError(f"--subject-nip: {value!r} is not a valid NIP")
    if kind == "Pesel" and not is_valid_pesel(value):
        raise ConfigurationError(f"--subject-pesel: {value!r} is not a valid PESEL")
    if kind == "Fingerprint":
        value = value.upper()
        if len(value) != 64 or any(c not in "0123456789ABCDEF" for c in value):
            raise ConfigurationError("--subject-fingerprint: expected the 64 hex digits of a SHA-256 fingerprint")
    return PersonPermissionsSubjectIdentifier(type=kind, value=value), kind


def _details(kind: str, first_name: str, last_name: str, person_id: str | None) -> PersonPermissionSubjectDetails:
    if kind != "Fingerprint":
        return PersonPermissionSubjectDetails(
            subject_details_type="PersonByIdentifier",
            person_by_id=PersonDetails(first_name=first_name, last_name=last_name),
        )
    if person_id is None or not (is_valid_nip(person_id) or is_valid_pesel(person_id)):
        raise ConfigurationError("--subject-fingerprint needs --person-id with the person's PESEL or NIP")
    identifier = PersonIdentifier(type="Nip" if len(person_id) == 10 else "Pesel", value=person_id)
    return PersonPermissionSubjectDetails(
        subject_details_type="PersonByFingerprintWithIdentifier",
        person_by_fp_with_id=PersonByFingerprintWithIdentifierDetails(
            first_name=first_name, last_name=last_name, identifier=identifier
        ),
    )


@permissions_app.command(name="grant")
def grant(
    *permission_types: PermissionName,
    first_name: str,
    last_name: str,
    description: str,
    subject_nip: str | None = None,
    subject_pesel: str | None = None,
    subject_fingerprint: str | None = None,
    person_id: str | None = None,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    max_wait: float = 120.0,
) -> int:
    """Grant permissions to a person in the context and wait until KSeF has applied them.

    Exits 0 when the grant operation ended with 200, 1 when KSeF refused it.

    Parameters
    ----------
    permission_types
        One or more of InvoiceWrite, InvoiceRead, CredentialsManage, CredentialsRead, Introspection, SubunitManage,
        EnforcementOperations, CollectiveIdentifierManage.
    first_name
        The person's first name.
    last_name
        The person's last name.
    description
        What the permission is for (5..256 characters).
    subject_nip
        The person's NIP.
    subject_pesel
        The person's PESEL.
    subject_fingerprint
        The SHA-256 fingerprint of the person's certificate.
    person_id
        With --subject-fingerprint: the person's PESEL or NIP.
    connection
        Where and how to log in (needs CredentialsManage).
    max_wait
        Seconds to wait for the grant's final status.
    """

    def build() -> PersonPermissionsGrantRequest:
        if not permission_types:
            raise ConfigurationError("give at least one permission type, e.g. InvoiceWrite")
        if not 5 <= len(description) <= 256:
            raise ConfigurationError("--description must have 5..256 characters")
        subject, kind = _subject(subject_nip, subject_pesel, subject_fingerprint)
        return PersonPermissionsGrantRequest(
            subject_identifier=subject,
            permissions=tuple(dict.fromkeys(permission_types)),
            description=description,
            subject_details=_details(kind, first_name, last_name, person_id),
        )

    async def main() -> tuple[str, int, str]:
        request = build()
        async with connection.client() as client:
            started = await client.permissions.grant_to_person(request)
            status = await client.permissions.wait_for_operation(started.reference_number, max_wait=max_wait)
        return started.reference_number, status.status.code, status.status.description

    return run_async(main, _print_outcome)


def _print_outcome(outcome: tuple[str, int, str]) -> int:
    reference, code, description = outcome
    print(f"operation {reference}: [{code}] {description}")
    return EXIT_OK


@permissions_app.command(name="revoke")
def revoke(
    permission_id: str,
    /,
    *,
    authorization: Annotated[bool, Parameter(negative="")] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    max_wait: float = 120.0,
) -> int:
    """Revoke a permission by its id (from ``permissions list``) and wait until KSeF has applied it.

    Exits 0 when the revocation ended with 200, 1 when KSeF refused it.

    Parameters
    ----------
    permission_id
        The permission's id.
    authorization
        The id is an entity authorization (self-invoicing, RR, PEF, tax representative).
    connection
        Where and how to log in.
    max_wait
        Seconds to wait for the revocation's final status.
    """

    async def main() -> tuple[str, int, str]:
        async with connection.client() as client:
            if authorization:
                started = await client.permissions.revoke_authorization(permission_id)
            else:
                started = await client.permissions.revoke(permission_id)
            status = await client.permissions.wait_for_operation(started.reference_number, max_wait=max_wait)
        return started.reference_number, status.status.code, status.status.description

    return run_async(main, _print_outcome)
