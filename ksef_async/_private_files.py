"""Owner-only files and directories for anything holding counterparty data (invoices, index, UPOs, reports)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ksef_async.core.safepath import safe_join

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "append_private",
    "private_dir",
    "replaceable",
    "sync_directory",
    "write_private",
    "write_private_in",
]

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


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


def replaceable(path: Path) -> Path:
    """Return the file an atomic write of ``path`` replaces: ``path``, or the file a symbolic link there names.

    Renaming over a symbolic link would replace the link, and over a device or FIFO (``/dev/stdout``,
    ``/dev/null``) would put a regular file in its place: a link of ours is followed (another user's is refused),
    anything but a regular file refused.

    Raises:
        OSError: ``path`` (or what it links to) exists and is not a regular file, or is another user's link.
    """
    target = path
    if path.is_symlink():
        # Only our own link is followed: one planted by another user in a shared directory (/tmp) must not
        # redirect the write into a file of ours (the classic symlink attack).
        if hasattr(os, "getuid") and path.lstat().st_uid != os.getuid():
            raise OSError(errno.EPERM, "a symbolic link owned by another user (not followed)", os.fspath(path))
        target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISREG(mode):
        return target
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
    raise OSError(errno.EINVAL, "not a regular file (a device, FIFO or socket is never replaced)", os.fspath(path))


def write_private(path: Path, data: bytes | Iterable[bytes], *, fsync: bool = False, fsync_dir: bool = False) -> Path:
    """Replace ``path`` atomically with ``data``, mode 0o600: temporary file, optional fsync, rename.

    The one atomic writer of the package (plans, upload records, sync state and invoices, reports, UPOs). A reader
    never sees a half-written file, and the file is never world-readable, not even for an instant. ``data`` may be
    an iterable of chunks (written as they come: a large plan is never whole in memory). ``fsync`` makes the
    contents durable before the rename, ``fsync_dir`` the rename itself. On any failure the temporary file is
    removed and a previous file at ``path`` is left as it was.
    A symbolic link at ``path`` is followed (the file it names is replaced); anything else that is not a regular
    file is refused (`replaceable`).
    """
    shown = path
    path = replaceable(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
        FILE_MODE,
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in [data] if isinstance(data, bytes | bytearray | memoryview) else data:
                fh.write(chunk)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (exc.filename is None or exc.filename == os.fspath(tmp)):
            exc.filename = os.fspath(shown)  # the user knows the file they named, not our temporary one
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
