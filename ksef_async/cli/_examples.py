"""One example per command, shown at the end of its ``--help`` (a test parses every example against the commands)."""

from __future__ import annotations

from typing import Final

from cyclopts import App

from ksef_async.cli._app import app

__all__ = ["EXAMPLES", "add_examples", "command_paths"]

_LOCAL: Final = frozenset({"demo", "make-invoices", "prepare", "qr", "simulator", "validate"})
"""Commands that do not log in to KSeF."""

EXAMPLES: Final[dict[str, tuple[str, ...]]] = {
    "cert enroll": ("cert enroll --name 'Offline signer' --type Offline --key-out k.pem --cert-out c.pem",),
    "cert list": ("cert list --status Active --json",),
    "cert revoke": ("cert revoke 01F2A3B4C5D6E7F8 --reason Superseded",),
    "collective create": ("collective create KSEF_A KSEF_B --amount 100.00 --currency PLN --description 'Rata 1'",),
    "collective query": ("collective query --from 2026-07-01T00:00:00+02:00 --to 2026-07-31T23:59:59+02:00 --json",),
    "collective invoices": ("collective invoices CI_NUMBER --json",),
    "collective find": ("collective find KSEF_A",),
    "demo": ("demo --invoices 200 --part-size 200000",),
    "get": ("get 5265877635-20260105-0123456789AB-CD --output invoice.xml",),
    "limits": ("limits --json",),
    "make-invoices": ("make-invoices out/ --count 100 --seller-nip 5265877635",),
    "permissions list": ("permissions list --json",),
    "permissions grant": (
        (
            "permissions grant InvoiceRead InvoiceWrite --first-name Anna --last-name Nowak "
            "--subject-nip 1111111111 --description 'bookkeeping'"
        ),
    ),
    "permissions revoke": ("permissions revoke PERMISSION_ID",),
    "prepare": ("prepare invoices/ --out state/ --env test",),
    "qr": ("qr invoice.xml --out kod.png --ksef-number 5265877635-20260105-0123456789AB-CD",),
    "query": ("query --subject Subject2 --from 2026-01-01 --to 2026-01-31 --json",),
    "resume": ("resume ~/.cache/ksef-async/20260105T101500.000000Z   (only KSEF_TOKEN is needed again)",),
    "send": ("send invoices/ --report report.json", "send invoice.xml --online --upo-dir upo/"),
    "simulator": ("simulator --port 8090 --nip 5265877635 --token my-test-token",),
    "status": ("status --json", "status 20260105-SB-0123456789-0123456789-AB --json"),
    "sync": ("sync inbox/ --subject Subject1,Subject2 --since 2026-01-01",),
    "token create": ("token create --permission InvoiceRead --description 'archive job' --out token.txt",),
    "token list": ("token list --status Active --json",),
    "token status": ("token status 20260105-EC-0123456789-0123456789-AB",),
    "token revoke": ("token revoke 20260105-EC-0123456789-0123456789-AB",),
    "upo": ("upo 20260105-SB-0123456789-0123456789-AB --out upo/",),
    "validate": ("validate invoices/ --json",),
}
"""Command path -> example command lines (without the leading ``ksef-async``; text after three spaces is a note)."""


def command_paths(root: App = app, prefix: str = "") -> list[str]:
    """Every runnable command under ``root``, as space-separated paths (``token create``)."""
    paths: list[str] = []
    for name in root:
        if name.startswith("-"):
            continue
        sub = root[name]
        path = f"{prefix}{name}"
        children = [n for n in sub if not n.startswith("-")]
        if children:
            paths.extend(command_paths(sub, f"{path} "))
        else:
            paths.append(path)
    return paths


def add_examples(root: App = app, *, only: str | None = None) -> None:
    """Put each command's examples at the end of its ``--help`` (only the top-level command ``only``, if given)."""
    for path, lines in EXAMPLES.items():
        if only is not None and path.split()[0] != only:
            continue
        command = root
        for part in path.split():
            command = command[part]
        shown = "\n".join(f"    ksef-async {line}" for line in lines)
        heading = "Example:" if len(lines) == 1 else "Examples:"
        if path.split()[0] not in _LOCAL:
            heading = heading[:-1] + " (with KSEF_ENV or KSEF_BASE_URL, KSEF_NIP and KSEF_TOKEN set):"
        command.help_epilogue = f"{heading}\n\n{shown}"
