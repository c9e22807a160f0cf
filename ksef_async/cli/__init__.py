"""Command-line interface: cyclopts commands that print and never decide (the library decides)."""

from __future__ import annotations

import importlib.util
import sys

from ksef_async.core.extras import require_extra
from ksef_async.errors import MissingExtraError

__all__ = ["main"]


def main() -> None:
    """Run the `ksef-async` command."""
    try:
        for module in ("cyclopts", "rich"):  # the cli extra is optional; found, not imported (--help stays cheap)
            if importlib.util.find_spec(module) is None:
                require_extra(module, extra="cli")
    except MissingExtraError as exc:
        sys.stderr.write(f"ksef-async: {exc}\n")
        raise SystemExit(2) from None
    from ksef_async.cli._index import load_app  # noqa: PLC0415 - only after the extra is known to be there

    app = load_app(sys.argv[1:])
    # File names that are not UTF-8 reach us surrogate-escaped; print them escaped instead of crashing.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    app.meta()  # the global options (--quiet, --verbose, --log-json), then the command
