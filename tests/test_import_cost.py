"""Guards cheap imports by the modules an import pulls in (never by timing): the package root, the CLI's help and
version, and the pytest plugin of an unrelated test run load nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Heavy libraries and our own heavy modules, none of which a bare import, --help or --version needs (cyclopts itself
# needs attrs, so the CLI checks leave it out).
HEAVY = (
    "aiohttp",
    "anyio",
    "cattrs",
    "cryptography",
    "lxml",
    "signxml",
    "xmlschema",
    "ksef_async.client",
    "ksef_async.models",
    "ksef_async.models._generated",
    "ksef_async.transport",
)


def _modules_after(code: str, *args: str, cwd: Path | None = None) -> set[str]:
    """Run ``code`` in a fresh interpreter; return the modules loaded when it finished (even via SystemExit)."""
    wrapper = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.__stderr__.write('\\nMODULES=' + json.dumps(sorted(sys.modules)) + '\\n'))\n"
        + code
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )
    marker = next((line for line in done.stderr.splitlines() if line.startswith("MODULES=")), None)
    assert marker is not None, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return set(json.loads(marker.removeprefix("MODULES=")))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_import_ksef_async_loads_only_the_version() -> None:
    modules = _modules_after("import ksef_async")
    assert _heavy(modules) == []
    assert "attrs" not in modules
    assert sorted(m for m in modules if m.startswith("ksef_async")) == [
        "ksef_async",
        "ksef_async._lazy",
        "ksef_async._version",
    ]
    assert "rich" not in modules


def test_a_public_name_loads_on_first_use() -> None:
    modules = _modules_after("import ksef_async; ksef_async.KsefClient")
    assert {"ksef_async.client", "aiohttp"} <= modules


def test_submodules_load_on_attribute_access_and_typos_stay_errors() -> None:
    import ksef_async  # noqa: PLC0415

    # in a fresh interpreter, where nothing imported the submodules yet
    code = "import ksef_async; print(ksef_async.errors.ApiError.__name__, ksef_async.testing.KsefSimulator.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.split() == ["ApiError", "KsefSimulator"], done.stderr
    with pytest.raises(AttributeError, match="has no attribute 'KsefClinet'"):
        _ = ksef_async.KsefClinet  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="__wrapped__"):
        _ = ksef_async.__wrapped__  # type: ignore[attr-defined]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []])
def test_cli_help_and_version_import_no_command(argv: list[str]) -> None:
    code = "import sys; from ksef_async.cli import main; sys.argv = ['ksef-async', *sys.argv[1:]]; main()"
    modules = _modules_after(code, *argv)
    assert _heavy(modules) == []
    commands = sorted(m for m in modules if m.startswith("ksef_async.cli.") and not m.rsplit(".", 1)[1].startswith("_"))
    assert commands == []


def test_cli_command_imports_only_its_own_module() -> None:
    code = "import sys; from ksef_async.cli import main; sys.argv = ['ksef-async', *sys.argv[1:]]; main()"
    modules = _modules_after(code, "validate", "--help")
    loaded = {m for m in modules if m.startswith("ksef_async.cli.") and not m.startswith("ksef_async.cli._")}
    assert loaded == {"ksef_async.cli.validate"}
    assert "aiohttp" not in modules


def test_pytest_plugin_loads_nothing_heavy_in_an_unrelated_run(tmp_path: Path) -> None:
    (tmp_path / "test_unrelated.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    code = "import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', *sys.argv[1:]]))"
    test = str(tmp_path / "test_unrelated.py")
    with_plugin = _modules_after(code, test, cwd=tmp_path)
    without = _modules_after(code, "-p", "no:ksef_async", test, cwd=tmp_path)
    assert "ksef_async.testing.pytest_plugin" in with_plugin  # the plugin was loaded (entry point pytest11)
    assert "ksef_async" not in without
    # What the plugin adds to the run: our package root and the plugin module, nothing else.
    assert sorted(with_plugin - without) == [
        "ksef_async",
        "ksef_async._lazy",
        "ksef_async._version",
        "ksef_async.testing",
        "ksef_async.testing.pytest_plugin",
    ]


def test_the_cli_index_lists_every_command_with_its_help() -> None:
    from cyclopts.help.help import docstring_parse  # noqa: PLC0415

    from ksef_async.cli._commands import app  # noqa: PLC0415
    from ksef_async.cli._index import COMMANDS  # noqa: PLC0415

    registered = {name: app[name] for name in app if not name.startswith("-")}
    assert sorted(registered) == sorted(COMMANDS)
    for name, sub in registered.items():
        module, help_line = COMMANDS[name]
        assert docstring_parse(sub.help, "markdown").short_description == help_line, name
        target = sub.default_command.__module__ if sub.default_command is not None else None
        assert target in {module, None}, name
