"""`ksef-async token create|list|status|revoke`: manage the context's KSeF tokens."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_OK, EXIT_USAGE, Connection, run_async
from ksef_async.cli._files import refuse_existing, write_secret
from ksef_async.errors import ConfigurationError
from ksef_async.models import GenerateTokenResponse, QueryTokensResponseItem, TokenStatusResponse

__all__ = ["token_app"]

Permission = Literal[
    "InvoiceRead",
    "InvoiceWrite",
    "CredentialsRead",
    "CredentialsManage",
    "SubunitManage",
    "EnforcementOperations",
    "Introspection",
    "CollectiveIdentifierManage",
]
Status = Literal["Pending", "Active", "Revoking", "Revoked", "Failed"]

token_app = App(name="token", help="Manage KSeF tokens (creating one needs a certificate login).")
app.command(token_app)


@token_app.command(name="create")
def create(
    *,
    permission: Annotated[tuple[Permission, ...], Parameter(consume_multiple=True)],
    description: str,
    out: Path | None = None,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """Create a KSeF token; KSeF shows its secret only once.

    Parameters
    ----------
    permission
        Permissions of the token (repeat the option or list several).
    description
        5 to 256 characters.
    out
        Write the token to this new file (mode 0600) instead of printing it.
    connection
        Where and how to log in (a certificate: KSeF creates tokens only after a signature login).
    """
    if refuse_existing((out, "--out")):  # checked first: KSeF shows the secret only once
        return EXIT_USAGE
    return run_async(lambda: _create(connection, permission, description), lambda created: _show(created, out))


async def _create(connection: Connection, permissions: tuple[str, ...], description: str) -> GenerateTokenResponse:
    async with connection.client() as client:
        return await client.tokens.create(permissions, description)


def _show(created: GenerateTokenResponse, out: Path | None) -> int:
    print(f"reference number: {created.reference_number}")
    if out is None:
        print(f"token: {created.token}")
        return EXIT_OK
    try:
        write_secret(out, created.token.encode("utf-8") + b"\n", "--out")
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}; token {created.reference_number} was created: revoke it") from None
    print(f"token written to {out}", file=sys.stderr)
    return EXIT_OK


def _item_json(item: QueryTokensResponseItem | TokenStatusResponse) -> dict[str, Any]:
    return {
        "reference_number": item.reference_number,
        "status": str(item.status),
        "description": item.description,
        "permissions": [str(p) for p in item.requested_permissions],
        "author": f"{item.author_identifier.type}:{item.author_identifier.value}",
        "created": item.date_created.isoformat(),
        "last_used": item.last_use_date.isoformat() if item.last_use_date else None,
    }


@token_app.command(name="list")
def list_tokens(
    *,
    status: Annotated[tuple[Status, ...], Parameter(consume_multiple=True)] = (),
    description: str | None = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """List the context's KSeF tokens (never their secrets).

    Parameters
    ----------
    status
        Only tokens in these statuses.
    description
        Only tokens whose description contains this text (3 characters or more).
    as_json
        Print JSON instead of text.
    connection
        Where and how to log in.
    """
    return run_async(lambda: _list(connection, status, description), lambda items: _print_list(items, as_json=as_json))


async def _list(
    connection: Connection, statuses: tuple[str, ...], description: str | None
) -> list[QueryTokensResponseItem]:
    async with connection.client() as client:
        return [t async for t in client.tokens.list(statuses=statuses, description=description)]


def _print_list(items: list[QueryTokensResponseItem], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps([_item_json(i) for i in items], ensure_ascii=False, indent=2))
    else:
        for item in items:
            permissions = ",".join(str(p) for p in item.requested_permissions)
            print(f"{item.reference_number}  {item.status!s:<8}  {permissions}  {item.description}")
    return EXIT_OK


@token_app.command(name="status")
def status_command(
    reference_number: str,
    /,
    *,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """Show one KSeF token as JSON.

    Parameters
    ----------
    reference_number
        The token's reference number.
    connection
        Where and how to log in.
    """
    return run_async(lambda: _status(connection, reference_number), _print_status)


async def _status(connection: Connection, reference_number: str) -> TokenStatusResponse:
    async with connection.client() as client:
        return await client.tokens.status(reference_number)


def _print_status(item: TokenStatusResponse) -> int:
    print(json.dumps(_item_json(item), ensure_ascii=False, indent=2))
    return EXIT_OK


@token_app.command(name="revoke")
def revoke(
    reference_number: str,
    /,
    *,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """Revoke a KSeF token: logins with it fail from now on.

    Parameters
    ----------
    reference_number
        The token's reference number.
    connection
        Where and how to log in.
    """
    return run_async(lambda: _revoke(connection, reference_number), lambda _: _revoked(reference_number))


async def _revoke(connection: Connection, reference_number: str) -> None:
    async with connection.client() as client:
        await client.tokens.revoke(reference_number)


def _revoked(reference_number: str) -> int:
    print(f"revoked {reference_number}")
    return EXIT_OK
