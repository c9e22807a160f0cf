"""Options every command takes (``--quiet``, ``--verbose``, ``--log-json FILE``), parsed before the command runs."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Group, Parameter

from ksef_async._logging import ROOT_LOGGER, JsonLinesFormatter
from ksef_async._private_files import FILE_MODE
from ksef_async.cli._app import app
from ksef_async.cli._exit_codes import EXIT_LOCAL_IO, EXIT_USAGE, exit_codes_text
from ksef_async.cli._output import OutputSettings

__all__ = ["GLOBAL_GROUP", "configure_output", "run"]

GLOBAL_GROUP = Group("Output (every command)", sort_key=200)
"""Help panel of the options every command takes."""


def configure_output(*, quiet: bool, verbose: bool, log_json: Path | None) -> list[logging.Handler]:
    """Apply the global options: progress on or off, log lines on stderr, JSON lines to a file.

    Returns:
        The handlers added to the ``ksef_async`` logger (the caller removes and closes them at the end).

    Raises:
        OSError: The JSON log file cannot be opened.
    """
    OutputSettings.quiet = quiet
    root = logging.getLogger(ROOT_LOGGER)
    added: list[logging.Handler] = []
    levels = [logging.WARNING]
    if verbose:
        stderr: logging.Handler = logging.StreamHandler(sys.stderr)
        stderr.setLevel(logging.INFO)
        stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        added.append(stderr)
        levels.append(logging.INFO)
    if log_json is not None:
        # Owner-only: records carry reference numbers and invoice file names (never secrets).
        fd = os.open(log_json, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        handler: logging.Handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(JsonLinesFormatter())
        added.append(handler)
        levels.append(logging.DEBUG)
    for handler in added:
        root.addHandler(handler)
    if added:
        root.setLevel(min(levels))
    return added


@app.meta.default
def run(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    quiet: Annotated[bool, Parameter(name=["--quiet", "-q"], negative="", group=GLOBAL_GROUP)] = False,
    verbose: Annotated[bool, Parameter(name=["--verbose", "-v"], negative="", group=GLOBAL_GROUP)] = False,
    log_json: Annotated[Path | None, Parameter(group=GLOBAL_GROUP)] = None,
) -> Any:
    """Run a command with the global options applied.

    Parameters
    ----------
    tokens
        The command and its arguments.
    quiet
        No progress bars or informational lines; results, warnings and errors still print.
    verbose
        Log what the client does (INFO: logins, sessions, retries, rate-limit waits) on stderr.
    log_json
        Append every log record (DEBUG and up) as one JSON object per line to this file (mode 0600): time,
        level, logger, message, and the context and reference numbers as ``ksef_*`` fields; never a secret.
    """
    if quiet and verbose:
        print("ksef-async: --quiet and --verbose exclude each other", file=sys.stderr)
        return EXIT_USAGE
    try:
        handlers = configure_output(quiet=quiet, verbose=verbose, log_json=log_json)
    except OSError as exc:
        from ksef_async.cli._connection import os_error_line  # noqa: PLC0415 - --help must not import the client

        print(f"ksef-async: --log-json: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_LOCAL_IO
    try:
        return app(tokens)
    finally:
        root = logging.getLogger(ROOT_LOGGER)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


app.help_epilogue = exit_codes_text()
app.register_install_completion_command(
    help="Install shell completion (bash, zsh or fish) for ksef-async and add it to the shell's startup file."
)
