"""Command-line interface: cyclopts commands that print and never decide (the library decides)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run the `ksef-async` command."""
    try:
        from ksef_async.cli._index import load_app  # noqa: PLC0415 - the CLI extra is optional

        app = load_app(sys.argv[1:])
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on installed extras
        if exc.name in {"cyclopts", "rich"}:
            sys.stderr.write("ksef-async: the command line needs the 'cli' extra: pip install 'ksef-async[cli]'\n")
            raise SystemExit(2) from exc
        raise
    # File names that are not UTF-8 reach us surrogate-escaped; print them escaped instead of crashing.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    app()
