"""Owner-only files and directories for anything holding counterparty data (invoices, index, UPOs, reports)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from ksef_async.core.safepath import safe_join

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "append_private",
    "private_dir",
    "sync_directory",
    "write_private",
    "write_private_in",
]

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0o700; an existing directory keeps its mode."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def sync_directory(path: Path) -> None:
    """Make renames in directory ``path`` durable (POSIX); a no-op where a directory cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, *, fsync: bool = False, fsync_dir: bool = False) -> Path:
    """Replace ``path`` atomically with ``data``, mode 0o600: temporary file, optional fsync, rename.

    A reader never sees a half-written file, and the file is never world-readable, not even for an instant.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (exc.filename is None or exc.filename == os.fspath(tmp)):
            exc.filename = os.fspath(path)  # the user knows the file they named, not our temporary one
        raise
    if fsync_dir:
        sync_directory(path.parent)
    return path


def write_private_in(directory: Path, name: str, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` as ``directory/name`` (a checked plain file name, `safe_join`) with `write_private`."""
    return write_private(safe_join(directory, name), data, fsync=fsync)


def append_private(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Append ``data`` to ``path``, creating it with mode 0o600 if missing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    with os.fdopen(fd, "ab") as fh:
        fh.write(data)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
