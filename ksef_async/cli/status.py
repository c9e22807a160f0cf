"""`ksef-async status`: the KSeF status service's state (no argument), or a session's status and its invoices."""

from __future__ import annotations

import json
from typing import Annotated, Any

from cyclopts import Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_OK, EXIT_REJECTED, Connection, run_async
from ksef_async.cli.service_status import service_status
from ksef_async.core.codes import SessionStatus
from ksef_async.resources.sessions import SESSION_PENDING_CODES

__all__ = ["status"]

_SESSION_OK = SessionStatus.PROCESSED


@app.command(name="status")
def status(
    reference_number: str | None = None,
    /,
    *,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    invoices: Annotated[bool, Parameter(negative="--no-invoices")] = True,
    status_url: Annotated[str | None, Parameter(env_var="KSEF_ASYNC_STATUS_URL")] = None,
    timeout: float = 10.0,
) -> int:
    """Without REFERENCE_NUMBER: KSeF's state from its status service (Latarnia) and upcoming maintenance.

    With REFERENCE_NUMBER: the status of that session (and of its invoices); exits 0 when it was processed successfully
    (or is still in progress), 1 when it failed.

    Without REFERENCE_NUMBER the exit code tells the state: 0 AVAILABLE, 3 MAINTENANCE, 4 FAILURE, 5 TOTAL_FAILURE,
    6 UNKNOWN (the status service could not be read: this says nothing about KSeF), 2 usage error. The service
    is --status-url, else $KSEF_ASYNC_STATUS_URL, else by --env (test and demo: the TEST service, a stub that
    reports a stale TOTAL_FAILURE; prod or nothing: production). No login is needed.

    Parameters
    ----------
    reference_number
        The session's reference number; omit it to ask the status service.
    connection
        Where and how to log in.
    as_json
        Print JSON instead of text.
    invoices
        Also list the session's invoices.
    status_url
        Base URL of the status service, e.g. a simulator's http://127.0.0.1:8090/latarnia.
    timeout
        Seconds to wait for the status service.
    """
    if reference_number is None:
        return service_status(connection.env, status_url, as_json=as_json, timeout=timeout)
    return run_async(lambda: _status(reference_number, connection, as_json=as_json, with_invoices=invoices), int)


async def _status(reference_number: str, connection: Connection, *, as_json: bool, with_invoices: bool) -> int:
    async with connection.client() as client:
        session = await client.sessions.status(reference_number)
        items = [item async for item in client.sessions.invoices(reference_number)] if with_invoices else []
    code = session.status.code
    if as_json:
        out: dict[str, Any] = {
            "reference_number": reference_number,
            "status_code": code,
            "description": session.status.description,
            "details": list(session.status.details or ()),
            "invoice_count": session.invoice_count,
            "successful_invoice_count": session.successful_invoice_count,
            "failed_invoice_count": session.failed_invoice_count,
            "upo_pages": [p.reference_number for p in session.upo.pages] if session.upo else [],
            "invoices": [
                {
                    "ordinal_number": i.ordinal_number,
                    "reference_number": i.reference_number,
                    "invoice_number": i.invoice_number,
                    "ksef_number": i.ksef_number,
                    "status_code": i.status.code,
                    "description": i.status.description,
                    "details": list(i.status.details or ()),
                }
                for i in items
            ],
        }
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(f"session {reference_number}: [{code}] {session.status.description}")
        print(
            f"invoices: {session.invoice_count or 0} total, {session.successful_invoice_count or 0} accepted, "
            f"{session.failed_invoice_count or 0} failed"
        )
        for item in items:
            number = item.ksef_number or "-"
            print(
                f"  {item.ordinal_number:>5} {item.invoice_number or '?'}: [{item.status.code}] {number} "
                f"{item.status.description}"
            )
    return EXIT_OK if code == _SESSION_OK or code in SESSION_PENDING_CODES else EXIT_REJECTED
