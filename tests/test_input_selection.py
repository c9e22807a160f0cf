"""Input selection: unreadable directories, symlink loops, FIFOs and huge files are reported, never skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksef_async.batch.inputs import PendingFile, iter_inputs, iter_sources
from ksef_async.batch.selection import UnusableFileError, read_invoice_file, select_files, select_sized
from ksef_async.cli._commands import app
from ksef_async.errors import ConfigurationError

SAMPLE = Path(__file__).parent / "data" / "samples" / "invoices" / "fa3-invoice-sample.xml"
NOBODY = 65534
ITER_INPUTS = (
    "import sys\n"
    "from ksef_async.batch.inputs import iter_inputs\n"
    "from ksef_async.errors import ConfigurationError\n"
    "try:\n"
    "    print([i.name for i in iter_inputs(sys.argv[1])])\n"
    "except ConfigurationError as exc:\n"
    "    print('refused:', exc)\n"
)
"""A child that prints the names `iter_inputs` yields for argv[1], or its refusal."""


def run_cli(*args: str) -> int:
    result = app(list(args), result_action="return_value")
    assert isinstance(result, int)
    return result


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's tmp_path is root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ksef-sel-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in path.rglob("*"):
            if sub.is_dir() and not sub.is_symlink():
                sub.chmod(0o755)
        shutil.rmtree(path)


def _as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run python code as an unprivileged user, so that file permissions apply (the tests run as root).

    The interpreter lives under root's home, which that user cannot read: the child imports everything first,
    then drops its privileges, then runs ``code``.
    """
    prelude = (
        "import os, sys, json, io, errno, glob, stat, traceback\n"
        "import ksef_async.cli._commands, ksef_async.batch.inputs, ksef_async.cli\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user; as non-root see the next test")
def test_validate_names_an_unreadable_subdirectory(world_readable_dir: Path) -> None:
    (world_readable_dir / "good.xml").write_bytes(SAMPLE.read_bytes())
    hidden = world_readable_dir / "hidden"
    hidden.mkdir()
    (hidden / "lost.xml").write_bytes(SAMPLE.read_bytes())
    hidden.chmod(0o000)
    code = "import sys; from ksef_async.cli import main; sys.argv = ['ksef-async', 'validate', sys.argv[1]]; main()"
    done = _as_nobody(code, str(world_readable_dir))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"{hidden}: directory not searched: permission denied" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_send_inputs_refuse_a_directory_with_an_unreadable_subdirectory(world_readable_dir: Path) -> None:
    (world_readable_dir / "good.xml").write_bytes(SAMPLE.read_bytes())
    hidden = world_readable_dir / "hidden"
    hidden.mkdir()
    hidden.chmod(0o000)
    code = ITER_INPUTS
    done = _as_nobody(code, str(world_readable_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:"), done.stdout
    assert f"{hidden}: directory not searched: permission denied" in done.stdout


def test_walker_errors_are_reported_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same as above without privileges to drop: inject the walker's error.
    (tmp_path / "sub").mkdir()
    real_scandir = os.scandir

    def scandir(path: object) -> object:
        if os.fspath(path).endswith("sub"):  # type: ignore[call-overload]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[call-overload]
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", scandir)
    selection = select_files([tmp_path])
    assert [(p.file, p.rule) for p in selection.problems] == [(str(tmp_path / "sub"), "io")]
    assert "permission denied" in selection.problems[0].reason


def test_symlink_loops_and_fifos_are_named_for_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = tmp_path / "loop.xml"
    loop.symlink_to(loop)
    fifo = tmp_path / "pipe.xml"
    os.mkfifo(fifo)
    broken = tmp_path / "broken.xml"
    broken.symlink_to(tmp_path / "nowhere.xml")
    (tmp_path / "good.xml").write_bytes(SAMPLE.read_bytes())

    # Named directly and found in a directory, each gets its own reason; "no such file" is for missing paths only.
    assert run_cli("validate", str(loop), str(fifo)) == 2
    err = capsys.readouterr().err
    assert f"{loop}: a symbolic link loop" in err
    assert f"{fifo}: a FIFO (named pipe), not a regular file" in err
    assert "no such file" not in err

    assert run_cli("validate", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"{loop}: a symbolic link loop" in err
    assert f"{fifo}: a FIFO (named pipe), not a regular file" in err
    assert f"{broken}: a broken symbolic link" in err
    assert "1 valid, 0 invalid" in err

    for path, reason in ((loop, "symbolic link loop"), (fifo, "FIFO")):
        with pytest.raises(ConfigurationError, match=reason):
            list(iter_inputs(path))


def test_a_missing_path_still_reads_no_such_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("validate", str(tmp_path / "missing.xml")) == 2
    assert "missing.xml: no such file or directory" in capsys.readouterr().err


def test_a_huge_file_is_refused_by_its_size_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = tmp_path / "huge.xml"
    with huge.open("wb") as handle:
        handle.truncate(4 * 1024**3)  # sparse: reading it would take seconds and 4 GiB of memory
    with pytest.raises(UnusableFileError, match=r"4,294,967,296 bytes.*not read") as info:
        read_invoice_file(huge)
    assert info.value.rule == "size"
    with pytest.raises(ConfigurationError, match="not read"):
        list(iter_inputs(huge))
    assert run_cli("validate", str(huge)) == 1
    assert "no invoice may exceed 3,000,000 bytes (not read)" in capsys.readouterr().out


@pytest.mark.parametrize("size", [0, 1, 13_000, 70_000, 3_000_000])
def test_a_file_is_read_whole_and_exactly(tmp_path: Path, size: int) -> None:
    path = tmp_path / "i.xml"
    data = os.urandom(size)
    path.write_bytes(data)
    assert read_invoice_file(path) == data


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs a file whose size stat does not tell")
def test_a_file_larger_than_its_stat_size_is_read_whole_and_still_bounded() -> None:
    status = Path("/proc/self/status")  # a regular file that stat calls empty
    assert status.stat().st_size == 0
    assert read_invoice_file(status).startswith(b"Name:")
    with pytest.raises(UnusableFileError, match="grew past 100 bytes") as info:
        read_invoice_file(status, limit=100)
    assert info.value.rule == "size"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user; as non-root see the next test")
def test_globs_name_unreadable_directories_too(world_readable_dir: Path) -> None:
    (world_readable_dir / "good.xml").write_bytes(SAMPLE.read_bytes())
    hidden = world_readable_dir / "hidden"
    hidden.mkdir()
    (hidden / "lost.xml").write_bytes(SAMPLE.read_bytes())
    hidden.chmod(0o000)
    for pattern in (f"{world_readable_dir}/**/*.xml", f"{world_readable_dir}/*/*.xml", f"{hidden}/*.xml"):
        code = "import sys; from ksef_async.cli import main; sys.argv = ['ksef-async', 'validate', sys.argv[1]]; main()"
        done = _as_nobody(code, pattern)
        assert done.returncode == 2, (pattern, done.stdout, done.stderr)
        assert f"{hidden}: directory not searched: permission denied" in done.stderr, (pattern, done.stderr)
    # A literal directory below one without search permission is named too, not reported as "no match".
    code = ITER_INPUTS
    done = _as_nobody(code, f"{hidden}/sub/*.xml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"refused: {hidden}: directory not searched: permission denied"), done.stdout


def test_glob_listing_errors_are_reported_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # glob.glob skips every directory it cannot list; the selection names each one.
    (tmp_path / "a.xml").write_bytes(SAMPLE.read_bytes())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.xml").write_bytes(SAMPLE.read_bytes())
    real_scandir = os.scandir

    def scandir(path: object) -> object:
        if os.fspath(path).endswith("sub"):  # type: ignore[call-overload]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[call-overload]
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", scandir)
    for pattern in (f"{tmp_path}/**/*.xml", f"{tmp_path}/*/*.xml", f"{tmp_path}/s*/*.xml"):
        selection = select_files([pattern])
        assert [(p.file, p.rule) for p in selection.problems] == [(str(tmp_path / "sub"), "io")], pattern
        assert "directory not searched: permission denied" in selection.problems[0].reason
    with pytest.raises(ConfigurationError, match="directory not searched"):
        list(iter_inputs(f"{tmp_path}/**/*.xml"))


def test_globs_match_like_glob_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import glob  # noqa: PLC0415 - the reference this test compares with

    for rel in ("a.xml", "B.XML", "c.txt", "d/e.xml", "d/f/g.xml", "d/.h.xml", ".i/j.xml", "k[1].xml"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SAMPLE.read_bytes())
    monkeypatch.chdir(tmp_path)
    patterns = ["*.xml", "**/*.xml", "d/**/*.xml", "*/*.xml", "?.xml", "[ab].xml", "d/.*.xml", ".*/*.xml", "k[[]1].xml"]
    for pattern in patterns + [f"{tmp_path}/{p}" for p in patterns]:
        expected = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if not Path(m).is_dir())  # noqa: PTH207
        assert sorted(select_files([pattern]).files) == expected, pattern
        assert expected, pattern


def test_hidden_names_are_skipped_by_walks_and_wildcards_alike(tmp_path: Path) -> None:
    for rel in ("a.xml", "B.XML", "._a.xml", ".git/c.xml", "sub/d.xml", "sub/.e.xml"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SAMPLE.read_bytes())
    walked = select_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in walked.files] == ["B.XML", "a.xml", "sub/d.xml"]
    globbed = select_files([f"{tmp_path}/**/*.xml"])
    assert [p.relative_to(tmp_path).as_posix() for p in globbed.files] == ["a.xml", "sub/d.xml"]  # case as written
    named = select_files([tmp_path / "._a.xml", f"{tmp_path}/.*.xml"])  # named, or matched by a dot pattern
    assert [p.name for p in named.files] == ["._a.xml", "._a.xml"]
    assert walked.problems == globbed.problems == named.problems == ()


def test_each_selected_file_carries_the_size_it_had_when_selected(tmp_path: Path) -> None:
    # One stat per file: the size read by the walk travels with the path, to bound the read-ahead of the pool.
    (tmp_path / "sub").mkdir()
    sizes = {"a.xml": 3, "sub/b.XML": 0, "sub/c.xml": 70_000}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "note.txt").write_bytes(b"not an invoice")
    expected = sorted((os.fspath(tmp_path / name), size) for name, size in sizes.items())
    files, problems = select_sized([tmp_path])
    assert (sorted(files), problems) == (expected, [])
    assert [Path(p) for p, _ in files] == list(select_files([tmp_path]).files)  # same files, same order
    globbed, _ = select_sized([os.fspath(tmp_path / "sub" / "*")])
    assert globbed == [(os.fspath(tmp_path / "sub" / "b.XML"), 0), (os.fspath(tmp_path / "sub" / "c.xml"), 70_000)]
    single, _ = select_sized([tmp_path / "a.xml"])
    assert single == [(os.fspath(tmp_path / "a.xml"), 3)]
    pending = list(iter_sources(tmp_path))
    assert [(p.name, p.size) for p in pending if isinstance(p, PendingFile)] == [
        (Path(path).name, size) for path, size in files
    ]
