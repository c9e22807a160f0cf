"""Output files of the CLI commands: checked before anything is sent, written atomically, secrets owner-only."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ksef_async._private_files import private_dir, replaceable, write_private
from ksef_async.errors import ConfigurationError

__all__ = ["check_outputs", "output_problem", "refuse_existing", "write_output", "write_secret"]


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


def _existing_ancestor(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current.parent != current:
        current = current.parent
    return current


def output_problem(path: Path, option: str, *, directory: bool = False) -> str | None:
    """Return why ``path`` cannot be written (a file, or with ``directory`` a directory created as needed).

    A file's directory must be a writable directory or be creatable under its nearest existing ancestor (the
    writers create it), and the file, if it exists, must be a writable file; the same for a directory.
    ``None`` when writable.
    """
    try:
        os.fsencode(path)
    except UnicodeError:
        return f"{option} {path}: the path cannot be encoded for this file system"
    return _dir_problem(path, option) if directory else _file_problem(path, option)


def _dir_problem(path: Path, option: str) -> str | None:
    if path.exists():
        if not path.is_dir():
            return f"{option} {path}: not a directory"
    else:
        ancestor = _existing_ancestor(path)
        if not ancestor.is_dir():
            return f"{option} {path}: {ancestor} is not a directory"
        try:
            private_dir(path)  # created now, as the write would: a failure shows before anything is sent
        except OSError as exc:
            return f"{option} {path}: cannot create it ({exc.strerror or exc})"
    return _probe(path, option)


def _probe(directory: Path, option: str) -> str | None:
    # Creating a file is the only sure test: os.access trusts root and knows nothing of read-only mounts or /proc.
    try:
        fd, name = tempfile.mkstemp(prefix=".ksef-async-probe-", dir=directory)
    except OSError as exc:
        return f"{option} {directory}: directory not writable ({exc.strerror or exc})"
    os.close(fd)
    Path(name).unlink()
    return None


def _file_problem(path: Path, option: str) -> str | None:
    try:
        target = replaceable(path)  # a symbolic link's file; a directory, device or FIFO is refused
    except OSError as exc:
        return f"{option} {path}: {exc.strerror}"
    if target.exists() and not os.access(target, os.W_OK):
        return f"{option} {path}: the file is not writable"
    problem = _dir_problem(target.absolute().parent, "directory")
    return None if problem is None else f"{option} {path}: {problem}"


def check_outputs(*outputs: tuple[Path | None, str, bool]) -> bool:
    """Say on stderr which ``(path, option, is_directory)`` output cannot be written; return whether one cannot.

    Commands call it before contacting KSeF, so that nothing is sent or downloaded (downloads are rate-limited
    and some are shown only once) when its result could not be saved.
    """
    bad = False
    for path, option, directory in outputs:
        if path is None:
            continue
        problem = output_problem(path, option, directory=directory)
        if problem is not None:
            print(f"ksef-async: {problem}", file=sys.stderr)
            bad = True
    return bad


def write_output(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically, owner-only (its directory created 0700 if missing).

    On failure (disk full, permissions) the temporary file is removed and the error (an `OSError` naming
    ``path``) propagates; a previous file at ``path`` is left as it was.
    """
    private_dir(path.parent)
    write_private(path, data, fsync=True)
