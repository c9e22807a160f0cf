"""The command index: each command's module and one-line help, so that a run imports only the command it runs.

``ksef-async --help`` and ``--version`` import no command module (no aiohttp, lxml or cryptography); ``ksef-async
send ...`` imports `ksef_async.cli.send` alone. `ksef_async.cli._commands` still imports every command (tests and
tools use it); a test checks that this index lists exactly its commands, with the same help.

To add a command: its module registers it on `ksef_async.cli._app.app` (as every command module does), is imported
by `ksef_async.cli._commands`, and gets a line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ksef_async.cli._app import app
from ksef_async.cli._examples import add_examples

if TYPE_CHECKING:
    from cyclopts import App

__all__ = ["COMMANDS", "load_app"]

COMMANDS: dict[str, tuple[str, str]] = {
    "cert": ("ksef_async.cli.cert", "Manage KSeF certificates (enrolling needs a certificate login)."),
    "collective": (
        "ksef_async.cli.collective",
        "Generate and list collective identifiers (identyfikatory zbiorcze).",
    ),
    "demo": (
        "ksef_async.cli.demo",
        "Start a KSeF simulator in this process, generate invoices, send them by batch, and show what happened.",
    ),
    "get": (
        "ksef_async.cli.get",
        "Download one invoice's XML by KSeF number; its SHA-256 is checked against KSeF's x-ms-meta-hash.",
    ),
    "limits": (
        "ksef_async.cli.limits",
        "Print the limits in force: GET /limits/context, GET /limits/subject and GET /rate-limits.",
    ),
    "make-invoices": (
        "ksef_async.cli.make_invoices",
        "Write COUNT generated FA(3) invoices for SELLER_NIP into OUTDIR (created if missing).",
    ),
    "permissions": ("ksef_async.cli.permissions", "List, grant and revoke permissions in a context."),
    "prepare": (
        "ksef_async.cli.prepare",
        "Prepare a batch without sending it: encrypted parts and a plan in --out, then bytes in, parts and MB/s.",
    ),
    "qr": (
        "ksef_async.cli.qr",
        "Write the QR code of an invoice (PNG or SVG by --out's extension) and print its verification link.",
    ),
    "query": (
        "ksef_async.cli.query",
        "Print the metadata of matching invoices; ranges longer than 100 days (in UTC) are split automatically.",
    ),
    "resume": (
        "ksef_async.cli.resume",
        "Finish the batch send recorded in STATE_DIR: upload what is missing, close, and collect the results.",
    ),
    "send": ("ksef_async.cli.send", "Send invoices to KSeF and print one line per invoice."),
    "simulator": (
        "ksef_async.cli.simulator",
        "Serve the KSeF API under /v2 on HOST:PORT; print the base URL; run until interrupted (Ctrl+C).",
    ),
    "status": (
        "ksef_async.cli.status",
        "Without REFERENCE_NUMBER: KSeF's state from its status service (Latarnia) and upcoming maintenance.",
    ),
    "sync": (
        "ksef_async.cli.sync",
        "Download received (or issued) invoices into OUTDIR, each once, up to KSeF's High Water Mark.",
    ),
    "token": ("ksef_async.cli.token", "Manage KSeF tokens (creating one needs a certificate login)."),
    "upo": (
        "ksef_async.cli.upo",
        "Download the UPO (official receipt) of a session: one ``<session>-<n>.xml`` file per page.",
    ),
    "validate": (
        "ksef_async.cli.validate",
        "Validate invoice files offline: encoding, prolog, characters, size, well-formedness and the XSD.",
    ),
}
"""Command name -> (module that registers it, the one-line help shown by ``ksef-async --help``)."""


def _listed_only() -> None:  # pragma: no cover - never run: a named command loads its module instead
    raise AssertionError("a command listed for --help ran without its module")


def _command_name(argv: Sequence[str]) -> str | None:
    """The first argument that is not a global option (nor ``--log-json``'s value)."""
    args = iter(argv)
    for arg in args:
        if arg == "--log-json":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def load_app(argv: Sequence[str]) -> App:
    """Return the application with what ``argv`` needs: its command's module, or every command's one-line help.

    The command named by the first argument is imported (it registers itself). Otherwise (``--help``,
    ``--version``, nothing, a typo) each command is listed by its help line alone, which is all cyclopts shows or
    suggests from; nothing there can run.
    """
    importlib.import_module("ksef_async.cli._global")  # --quiet, --verbose, --log-json and the exit-code table
    first = _command_name(argv)
    if first in COMMANDS:
        importlib.import_module(COMMANDS[first][0])
        add_examples(app, only=first)
        return app
    for name, (_module, help_line) in COMMANDS.items():
        if name not in app:
            app.command(_listed_only, name=name, help=help_line)
    return app
