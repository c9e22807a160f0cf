"""Which invoice files a path names, and reading one: every unusable entry is reported with its reason, none skipped.

`Path.rglob` swallows ``PermissionError`` and treats FIFOs and symlink loops like missing files; the walk here
reports each unreadable directory and each ``*.xml`` entry that is not a readable regular file (symlink loop,
broken link, FIFO, device, socket, permission denied), and a file larger than any invoice may be is refused by its
size before a byte of it is read. `ksef-async validate` and `ksef_async.batch.inputs` both select files here.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import attrs

from ksef_async.errors import ConfigurationError, InvoiceProblem
from ksef_async.xml.preflight import MAX_INVOICE_SIZE_WITH_ATTACHMENT

__all__ = ["Selection", "UnusableFileError", "read_invoice_file", "select_files", "unusable_reason"]

_GLOB_CHARS = frozenset("*?[")


class UnusableFileError(ConfigurationError):
    """An input file cannot be used as an invoice: unreadable, not a regular file, or too large.

    Attributes:
        path: The file.
        reason: Why, in a few words.
        rule: ``"size"`` for a file too large to be an invoice, ``"io"`` otherwise.
    """

    def __init__(self, path: str, reason: str, rule: str = "io") -> None:
        self.path = path
        self.reason = reason
        self.rule = rule
        super().__init__(f"{path}: {reason}")


@attrs.frozen
class Selection:
    """The invoice files found under the given paths and every entry that could not be used.

    Attributes:
        files: Readable-looking invoice files, in order (sorted within each directory or glob).
        problems: One per unusable path, unreadable directory or unusable ``*.xml`` entry (rule ``io``), or
            per path that names nothing (rule ``missing``).
    """

    files: tuple[Path, ...]
    problems: tuple[InvoiceProblem, ...]


def _kind_reason(mode: int) -> str | None:
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    return "not a regular file"  # pragma: no cover - no other file types on the supported systems


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


def unusable_reason(path: Path) -> str | None:
    """Return why ``path`` is neither a regular file nor a directory we can use, or ``None`` when it is one."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if path.is_symlink() else "no such file or directory"
    except OSError as exc:
        return _os_reason(exc)
    return _kind_reason(mode)


def _walk(top: Path) -> tuple[list[Path], list[InvoiceProblem]]:
    files: list[Path] = []
    problems: list[InvoiceProblem] = []

    def unreadable(exc: OSError) -> None:
        where = exc.filename if exc.filename is not None else top
        problems.append(InvoiceProblem(os.fspath(where), f"directory not searched: {_os_reason(exc)}", None, "io"))

    # Symlinked directories are not followed (as rglob did not), so a link cycle cannot loop the walk.
    for dirpath, _dirnames, filenames in os.walk(top, onerror=unreadable):
        for name in filenames:
            if not name.lower().endswith(".xml"):
                continue
            path = Path(dirpath, name)
            reason = unusable_reason(path)
            if reason is None and path.is_dir():  # pragma: no cover - os.walk lists directories separately
                continue
            if reason is None:
                files.append(path)
            else:
                problems.append(InvoiceProblem(os.fspath(path), reason, None, "io"))
    files.sort()
    problems.sort(key=lambda p: p.file)
    return files, problems


def _select_one(path: str | os.PathLike[str]) -> tuple[list[Path], list[InvoiceProblem]]:
    p = Path(path)
    text = os.fspath(path)
    reason = unusable_reason(p)
    if reason is None:
        return _walk(p) if p.is_dir() else ([p], [])
    if reason == "no such file or directory" and _GLOB_CHARS & set(text):
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))  # noqa: PTH207 - absolute patterns
        files = [m for m in matches if unusable_reason(m) is None and not m.is_dir()]
        problems = [
            InvoiceProblem(os.fspath(m), why, None, "io") for m in matches if (why := unusable_reason(m)) is not None
        ]
        if files or problems:
            return files, problems
        return [], [InvoiceProblem(text, "no such file, directory or matching glob", None, "missing")]
    rule = "missing" if reason == "no such file or directory" else "io"
    return [], [InvoiceProblem(text, reason, None, rule)]


def select_files(paths: Iterable[str | os.PathLike[str]]) -> Selection:
    """Select the invoice files of ``paths``: files as they are, ``*.xml`` under directories, glob matches.

    Nothing is skipped silently: each unreadable directory and each ``*.xml`` entry that is not a readable
    regular file is in ``problems`` with its reason.
    """
    files: list[Path] = []
    problems: list[InvoiceProblem] = []
    for path in paths:
        found, bad = _select_one(path)
        files.extend(found)
        problems.extend(bad)
    return Selection(tuple(files), tuple(problems))


def read_invoice_file(path: Path, limit: int = MAX_INVOICE_SIZE_WITH_ATTACHMENT) -> bytes:
    """Read an invoice file: a regular file of at most ``limit`` bytes, checked before reading.

    The file is opened without blocking (a FIFO put in place after selection cannot stall the read), its type
    and size are checked on the open descriptor, and at most ``limit + 1`` bytes are read.

    Raises:
        UnusableFileError: The file cannot be opened, is not a regular file, or is larger than ``limit``.
    """
    shown = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        reason = "no such file or directory" if isinstance(exc, FileNotFoundError) else _os_reason(exc)
        raise UnusableFileError(shown, reason) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        kind = _kind_reason(info.st_mode)
        if kind is not None or stat.S_ISDIR(info.st_mode):
            raise UnusableFileError(shown, kind or "a directory, not a file")
        if info.st_size > limit:
            raise UnusableFileError(
                shown, f"file is {info.st_size:,} bytes; no invoice may exceed {limit:,} bytes (not read)", "size"
            )
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise UnusableFileError(shown, _os_reason(exc)) from None
    if len(data) > limit:
        raise UnusableFileError(shown, f"file grew past {limit:,} bytes while being read", "size")
    return data
