"""New output files of the CLI commands: never overwritten, and secrets (keys, tokens) readable by their owner only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ksef_async.errors import ConfigurationError

__all__ = ["refuse_existing", "write_secret"]


def _exists(path: Path, option: str) -> str:
    return f"{option} {path}: the file exists (refusing to overwrite it)"


def refuse_existing(*outputs: tuple[Path | None, str]) -> bool:
    """Say on stderr which of the ``(path, option)`` outputs already exists, if one does; return whether one did.

    Commands call it before contacting KSeF: what they fetch (a token's secret, an enrolled certificate) is
    shown or issued only once, so the files must be writable before asking for it.
    """
    for path, option in outputs:
        if path is not None and path.exists():
            print(f"ksef-async: {_exists(path, option)}", file=sys.stderr)
            return True
    return False


def write_secret(path: Path, data: bytes, option: str) -> None:
    """Write ``data`` to a new file readable by its owner only (0600); never overwrite.

    Raises:
        ConfigurationError: The file exists or cannot be written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(_exists(path, option)) from None
    except OSError as exc:
        raise ConfigurationError(f"{option} {path}: cannot create the file ({exc.strerror or exc})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
