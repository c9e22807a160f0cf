"""PEP 562 lazy exports: a package lists its public names and where they live, and imports each on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the ``__getattr__`` and ``__dir__`` of a package whose public names are imported on first access.

    Args:
        package: The package's ``__name__`` (for error messages).
        namespace: The package's ``globals()``; a resolved name is cached there, so each is imported once.
        exports: Public name -> ``"module"`` (the name is the same there) or ``"module:attribute"``. Any other
            name is looked up as a submodule, so ``import ksef_async; ksef_async.errors.ApiError`` still works.

    Returns:
        The two module-level functions, to be bound as ``__getattr__, __dir__ = lazy_exports(...)``.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook
        target = exports.get(name)
        if target is None:
            return _submodule(package, name)
        module_name, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module_name), attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


def _submodule(package: str, name: str) -> Any:
    """``package.name`` as a submodule, imported now (as an eager package would have), else `AttributeError`."""
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise  # the submodule exists but something it imports is missing
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
