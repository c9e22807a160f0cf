"""Nox sessions: tests (3.11-3.13), lowest (every dependency at its floor), lint, typing, benchmarks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.default_venv_backend = "venv"

PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite against the simulator (README's test command)."""
    session.install(".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check")
    session.run("ruff", "format", "--check")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over the package, tests, benchmarks and tools."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every benchmark; each prints its figure beside its baseline."""
    session.install("-e", ".[bench]")
    scripts = session.posargs or sorted(str(p) for p in Path("benchmarks").glob("bench_*.py"))
    for script in scripts:
        session.run("python", script)


def _lowest_constraints() -> list[str]:
    """``name==floor`` for every ``name>=floor`` runtime and CLI dependency in pyproject.toml."""
    project = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    requirements = [*project["dependencies"], *extras["cli"], *extras["fast"], *extras["qr"]]
    pins = []
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][^,;\s]*)(\s*;.*)?", requirement.split("#")[0].strip())
        if match is None:
            msg = f"{requirement!r} has no plain floor (name>=version); the lowest session cannot pin it"
            raise ValueError(msg)
        pins.append(f"{match.group(1)}=={match.group(2)}{match.group(3) or ''}")
    return pins


@nox.session(python="3.11")
def lowest(session: nox.Session) -> None:
    """Install the lowest versions pyproject.toml allows (every floor pinned) and run the suite."""
    constraints = Path(session.create_tmp()) / "lowest.txt"
    constraints.write_text("\n".join(_lowest_constraints()) + "\n", encoding="utf-8")
    session.install("-c", str(constraints), ".[test]")
    session.run("python", "-m", "pip", "freeze")
    session.run("python", "-m", "pytest", *session.posargs)
