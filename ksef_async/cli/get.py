"""`ksef-async get`: download one invoice by its KSeF number (hash-checked)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_LOCAL_IO, EXIT_OK, Connection, run_async
from ksef_async.cli._files import check_outputs, write_output
from ksef_async.retrieval.download import download_invoice

__all__ = ["get"]


@app.command(name="get")
def get(
    ksef_number: str,
    /,
    *,
    output: Path | None = None,
    wait: float = 600.0,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
) -> int:
    """Download one invoice's XML by KSeF number; its SHA-256 is checked against KSeF's x-ms-meta-hash.

    An invoice not available yet (21165) is retried until WAIT seconds have passed. Only for a few invoices:
    KSeF allows 64 downloads per hour; use ``sync`` for many.

    Parameters
    ----------
    ksef_number
        The invoice's KSeF number.
    output
        Write the XML to this file (default: standard output). Checked before downloading; exit 4 when it
        cannot be written.
    wait
        Seconds to keep retrying an invoice that is not available yet.
    connection
        Where and how to log in.
    as_json
        Print one JSON object instead: ``ksefNumber``, ``size``, ``sha256`` (Base64), and ``output`` (the file
        written) or ``xml`` (the invoice as text, when there is no --output).
    """
    if check_outputs((output, "--output", False)):
        return EXIT_LOCAL_IO  # checked before the download: KSeF allows few, and a spent one would be lost

    async def main() -> bytes:
        async with connection.client() as client:
            return await download_invoice(client.retrieval, ksef_number, max_wait=wait)

    def finish(xml: bytes) -> int:
        if as_json:
            if output is not None:
                write_output(output, xml)
            body = {
                "ksefNumber": ksef_number,
                "size": len(xml),
                "sha256": base64.b64encode(hashlib.sha256(xml).digest()).decode(),
            }
            body |= {"output": str(output)} if output is not None else {"xml": xml.decode("utf-8", "replace")}
            print(json.dumps(body, ensure_ascii=False))
            return EXIT_OK
        if output is None:
            sys.stdout.buffer.write(xml)
            sys.stdout.buffer.flush()
        else:
            write_output(output, xml)
            print(f"{ksef_number}: {len(xml)} bytes written to {output}", file=sys.stderr)
        return EXIT_OK

    return run_async(main, finish)
