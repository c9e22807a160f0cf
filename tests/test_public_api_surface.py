"""Pins the public API: the ``__all__`` of each public module must equal tests/public_api.txt, so changes are
deliberate (``python tools/public_api.py --write``), and every public name must resolve."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SURFACE = ROOT / "tests" / "public_api.txt"


def _pinned() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in SURFACE.read_text(encoding="utf-8").splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif line and not line.startswith("#"):
            assert current is not None, line
            current.append(line)
    return sections


PINNED = _pinned()


def _isort_style(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then CamelCase, then the rest."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("module_name", sorted(PINNED))
def test_public_names_are_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert list(module.__all__) == sorted(module.__all__, key=_isort_style), "keep __all__ sorted (ruff RUF022)"
    assert sorted(module.__all__) == PINNED[module_name], (
        "the public API changed: if deliberate, run python tools/public_api.py --write"
    )
    for name in module.__all__:
        assert getattr(module, name) is not None or name.startswith("_"), name


@pytest.mark.parametrize("module_name", sorted(PINNED))
def test_contributing_names_the_public_modules(module_name: str) -> None:
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = contributing.split("## Public API", 1)[1].split("\n## ", 1)[0]
    assert f"`{module_name}`" in section


def _type_checking_imports(source: str) -> dict[str, str]:
    """``name -> "module"`` (or ``"module:attribute"``) of the imports under the module's ``if TYPE_CHECKING:``."""
    tree = ast.parse(source)
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "typing.TYPE_CHECKING"
    )
    found: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            name = alias.asname or alias.name
            found[name] = f"{node.module}:{alias.name}" if alias.asname else str(node.module)
    return found


@pytest.mark.parametrize("package", ["ksef_async", "ksef_async.testing"])
def test_lazy_packages_type_check_what_they_export(package: str) -> None:
    # What mypy and IDEs see (the TYPE_CHECKING imports) is what runs (the lazy map), and both are __all__.
    module = importlib.import_module(package)
    source = Path(module.__file__ or "").read_text(encoding="utf-8")
    assert _type_checking_imports(source) == module._EXPORTS
    assert sorted(set(module._EXPORTS) | ({"__version__"} & set(module.__all__))) == sorted(module.__all__)
    assert set(module.__all__) <= set(dir(module))
    for name in module._EXPORTS:
        assert name not in vars(module) or vars(module)[name] is getattr(module, name)
        module_path, _, attribute = module._EXPORTS[name].partition(":")
        assert getattr(module, name) is getattr(importlib.import_module(module_path), attribute or name)
