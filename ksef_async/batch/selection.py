"""Which invoice files a path names, and reading one: every unusable entry is reported with its reason, none skipped.

The one selection rule of ``validate``, ``prepare`` and ``send`` (and of `ksef_async.batch.inputs`; ``resume``
reads the files its plan recorded): a file is used as named; a directory is searched recursively for names ending
in ``.xml`` in any case; a glob (``*``, ``?``, ``[...]``, ``**``) matches case-sensitively, as written, and a
directory it matches is searched like one named. Names with a leading dot are skipped inside directories and by
wildcards (as by the shell). Symbolic links to files are followed; links to directories are followed only when
named or matched by a pattern's last part (so a link cycle cannot loop a walk).

`Path.rglob` swallows ``PermissionError`` and treats FIFOs and symlink loops like missing files; the walk here
reports each unreadable directory and each ``*.xml`` entry that is not a readable regular file (symlink loop,
broken link, FIFO, device, socket, permission denied), and a file larger than any invoice may be is refused by its
size before a byte of it is read. `ksef-async validate` and `ksef_async.batch.inputs` both select files here.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

from ksef_async.errors import ConfigurationError, InvoiceProblem
from ksef_async.xml.preflight import MAX_INVOICE_SIZE_WITH_ATTACHMENT

__all__ = [
    "Selection",
    "Sized",
    "UnusableFileError",
    "read_invoice_file",
    "select_files",
    "select_sized",
    "unusable_reason",
]

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
    found = _examined(os.fspath(path))
    return found if isinstance(found, str) else None


def _examined(path: str) -> str | os.stat_result:
    """Why ``path`` is unusable (as `unusable_reason`), or, when it is usable, what its one ``stat`` said."""
    try:
        info = os.stat(path)  # noqa: PTH116 - a string path: no `Path` per file on the hot walk
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "no such file or directory"  # noqa: PTH114
    except OSError as exc:
        return _os_reason(exc)
    return _kind_reason(info.st_mode) or info


# A selected file: its path and the size it had when selected (bounds the read-ahead; the read checks it again).
Sized = tuple[str, int]


def _path_order(path: str) -> list[str]:
    # The order of `Path` comparisons (component by component, case-folded where the system folds case), as
    # one key per path: sorting 10,000 paths by `Path.__lt__` costs ~120,000 Python-level comparisons.
    return os.path.normcase(path).split(os.sep)  # noqa: PTH206 - a string split, not a Path per key


def _walk(top: Path) -> tuple[list[Sized], list[InvoiceProblem]]:
    files: list[Sized] = []
    problems: list[InvoiceProblem] = []

    def unreadable(exc: OSError) -> None:
        where = exc.filename if exc.filename is not None else top
        problems.append(InvoiceProblem(os.fspath(where), f"directory not searched: {_os_reason(exc)}", None, "io"))

    # Symlinked directories are not followed (as rglob did not), so a link cycle cannot loop the walk. Hidden
    # names (a leading dot: editor and macOS "._" companion files, VCS folders) are skipped, as a wildcard skips them.
    for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(".xml"):
                continue
            # Strings, one stat each: for 10,000 files a `Path` and a second stat apiece cost ~0.3 s.
            path = os.path.join(dirpath, name)  # noqa: PTH118
            found = _examined(path)
            if isinstance(found, str):
                problems.append(InvoiceProblem(path, found, None, "io"))
            else:
                files.append((path, found.st_size))  # a directory would be in ``dirnames``, unless it appeared since
    files.sort(key=lambda found: _path_order(found[0]))
    problems.sort(key=lambda p: p.file)
    return files, problems


def _glob_problem(directory: Path, exc: OSError) -> InvoiceProblem:
    return InvoiceProblem(os.fspath(directory), f"directory not searched: {_os_reason(exc)}", None, "io")


def _hidden(name: str, pattern: str) -> bool:
    # As glob.glob and the shell: a wildcard does not match a leading dot unless the pattern starts with one.
    return name.startswith(".") and not pattern.startswith(".")


def _listdir(directory: Path, problems: list[InvoiceProblem]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as exc:
        problems.append(_glob_problem(directory, exc))
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # pragma: no cover - DirEntry.is_dir only fails on races; the entry is then no directory
        return False


def _expand_literal(directory: Path, part: str, rest: list[str], problems: list[InvoiceProblem]) -> Iterator[Path]:
    path = directory / part
    try:
        mode = path.stat().st_mode if rest else path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:  # e.g. ``directory`` without search permission: say so, do not report "no match"
        problems.append(_glob_problem(directory, exc))
        return
    if not rest:
        yield path
    elif stat.S_ISDIR(mode):
        yield from _expand(path, rest, problems)


def _expand(directory: Path, parts: list[str], problems: list[InvoiceProblem]) -> Iterator[Path]:
    """Yield the paths under ``directory`` matching ``parts``; each directory that cannot be listed is a problem."""
    if not parts:
        yield directory
        return
    part, rest = parts[0], parts[1:]
    if part == "**":
        # Zero or more directories; symbolic links to directories are not followed (a link cycle cannot loop).
        yield from _expand(directory, rest, problems)
        for entry in _listdir(directory, problems):
            if not _hidden(entry.name, part) and not entry.is_symlink() and _is_dir(entry):
                yield from _expand(directory / entry.name, parts, problems)
    elif not _GLOB_CHARS & set(part):
        yield from _expand_literal(directory, part, rest, problems)
    else:
        for entry in _listdir(directory, problems):
            if _hidden(entry.name, part) or not fnmatch.fnmatchcase(entry.name, part):
                continue
            if not rest:
                yield directory / entry.name
            elif _is_dir(entry):
                yield from _expand(directory / entry.name, rest, problems)


def _glob(pattern: str) -> tuple[list[Path], list[InvoiceProblem]]:
    """Expand ``pattern`` (``*``, ``?``, ``[...]``, ``**``) like `glob.glob` with ``recursive=True``.

    Unlike `glob.glob`, which skips every directory it cannot list, each such directory is a problem.
    """
    problems: list[InvoiceProblem] = []
    anchor = Path(pattern).anchor
    parts = [part for part in re.split(r"[\\/]" if os.altsep else re.escape(os.sep), pattern[len(anchor) :]) if part]
    matches = sorted(set(_expand(Path(anchor), parts, problems)))
    return matches, list({p.file: p for p in problems}.values())  # ``**`` may try a directory twice


def _select_one(path: str | os.PathLike[str]) -> tuple[list[Sized], list[InvoiceProblem]]:
    p = Path(path)
    text = os.fspath(path)
    examined = _examined(text)
    if not isinstance(examined, str):  # usable: what its stat said
        return _walk(p) if stat.S_ISDIR(examined.st_mode) else ([(text, examined.st_size)], [])
    reason = examined
    if _GLOB_CHARS & set(text) and not os.path.lexists(text):  # a pattern (stat may fail with EACCES first)
        matches, problems = _glob(text)
        files: list[Sized] = []
        for match in matches:
            found = _examined(os.fspath(match))
            if isinstance(found, str):
                problems.append(InvoiceProblem(os.fspath(match), found, None, "io"))
            elif stat.S_ISDIR(found.st_mode):  # a matched directory is searched like one named directly
                walked, bad = _walk(match)
                files.extend(walked)
                problems.extend(bad)
            else:
                files.append((os.fspath(match), found.st_size))
        if files or problems:
            return list(dict.fromkeys(files)), problems
        return [], [InvoiceProblem(text, "no such file, directory or matching glob", None, "missing")]
    rule = "missing" if reason == "no such file or directory" else "io"
    return [], [InvoiceProblem(text, reason, None, rule)]


def select_files(paths: Iterable[str | os.PathLike[str]]) -> Selection:
    """Select the invoice files of ``paths``: files as they are, ``*.xml`` under directories, glob matches.

    Nothing is skipped silently: each unreadable directory and each ``*.xml`` entry that is not a readable
    regular file is in ``problems`` with its reason.
    """
    files, problems = select_sized(paths)
    return Selection(tuple(Path(path) for path, _ in files), tuple(problems))


def select_sized(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Sized], list[InvoiceProblem]]:
    """`select_files`, with each file as its path string and the size it had when selected."""
    files: list[Sized] = []
    problems: list[InvoiceProblem] = []
    for path in paths:
        found, bad = _select_one(path)
        files.extend(found)
        problems.extend(bad)
    return files, problems


def read_invoice_file(path: str | os.PathLike[str], limit: int = MAX_INVOICE_SIZE_WITH_ATTACHMENT) -> bytes:
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
    try:
        info = os.fstat(fd)
        kind = _kind_reason(info.st_mode)
        if kind is not None or stat.S_ISDIR(info.st_mode):
            raise UnusableFileError(shown, kind or "a directory, not a file")
        if info.st_size > limit:
            raise UnusableFileError(
                shown, f"file is {info.st_size:,} bytes; no invoice may exceed {limit:,} bytes (not read)", "size"
            )
        try:
            data = _read_at_most(fd, info.st_size, limit)
        except OSError as exc:
            raise UnusableFileError(shown, _os_reason(exc)) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnusableFileError(shown, f"file grew past {limit:,} bytes while being read", "size")
    return data


def _read_at_most(fd: int, expected: int, limit: int) -> bytes:
    """Read to the end of ``fd``, or ``limit + 1`` bytes: one read of the size `fstat` gave, then small ones.

    Raw reads sized by the file: a buffered read of ``limit + 1`` bytes would allocate (map and unmap) 3 MB per
    invoice, and with several threads each unmap interrupts every core.
    """
    chunks: list[bytes] = []
    total = 0
    want = min(expected, limit) + 1  # one more byte to see the end (or growth) without a second read
    while total <= limit:
        chunk = os.read(fd, want)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        want = min(limit + 1 - total, 1 << 16)
    return b"".join(chunks)
