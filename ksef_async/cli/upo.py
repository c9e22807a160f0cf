"""`ksef-async upo`: download a processed session's UPO pages (hash-checked) into a directory."""

from __future__ import annotations

import sys
from pathlib import Path

from ksef_async._private_files import private_dir, write_private_in
from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_LOCAL_IO, EXIT_OK, EXIT_REJECTED, Connection, run_async
from ksef_async.cli._files import check_outputs
from ksef_async.xml.upo import parse_upo

__all__ = ["upo"]


@app.command(name="upo")
def upo(
    reference_number: str,
    /,
    *,
    out: Path,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """Download the UPO (official receipt) of a session: one ``<session>-<n>.xml`` file per page.

    Exits 0 when the UPO was saved, 1 when the session has no UPO (yet).

    Parameters
    ----------
    reference_number
        The session's reference number.
    out
        Directory to write the pages to (created if needed).
    connection
        Where and how to log in.
    """
    if check_outputs((out, "--out", True)):
        return EXIT_LOCAL_IO
    return run_async(lambda: _download(reference_number, connection), lambda pages: _save(reference_number, pages, out))


async def _download(reference_number: str, connection: Connection) -> list[bytes] | None:
    async with connection.client() as client:
        session = await client.sessions.status(reference_number)
        if session.upo is None or not session.upo.pages:
            print(
                f"session {reference_number} has no UPO yet: [{session.status.code}] {session.status.description}",
                file=sys.stderr,
            )
            return None
        return [await client.sessions.upo(reference_number, page.reference_number) for page in session.upo.pages]


def _save(reference_number: str, pages: list[bytes] | None, out: Path) -> int:
    if pages is None:
        return EXIT_REJECTED
    private_dir(out)
    for number, page in enumerate(pages, 1):
        parsed = parse_upo(page)
        path = write_private_in(out, f"{reference_number}-{number}.xml", page)
        print(f"{path}: {len(parsed.documents)} invoice(s)")
    return EXIT_OK
