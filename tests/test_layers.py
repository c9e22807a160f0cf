"""The import-linter layers contract (pyproject.toml) gives every top-level module of the package a place."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import ksef_async

ROOT = Path(__file__).resolve().parents[1]


def _layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    return {name for layer in layers for name in re.split(r"\s*[|:]\s*", layer.strip())}


def test_every_top_level_module_is_in_a_layer() -> None:
    package = Path(ksef_async.__file__).parent
    top_level = {f"ksef_async.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    top_level |= {f"ksef_async.{p.parent.name}" for p in package.glob("*/__init__.py")}
    layered = _layered_modules()
    assert sorted(top_level - layered) == [], "add the new module to a layer in pyproject.toml [tool.importlinter]"
    assert sorted(layered - top_level) == []


def test_ci_runs_lint_imports() -> None:
    assert "\nlint-imports\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
