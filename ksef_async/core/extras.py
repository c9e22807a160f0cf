"""The one helper that imports an optional dependency or raises `MissingExtraError` naming its extra."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

from ksef_async.errors import MissingExtraError

__all__ = ["EXTRAS", "require_extra"]

EXTRAS: Final = {
    "cli": ("the command line", ("cyclopts", "rich")),
    "fast": ("fast deflate (isal)", ("isal",)),
    "otel": ("OpenTelemetry tracing and metrics", ("opentelemetry",)),
    "qr": ("QR images", ("segno",)),
    "redis": ("shared rate limits in Redis", ("redis",)),
    "test": ("the simulator's strict contract mode", ("jsonschema",)),
    "workers": ("batch jobs on many machines (arq)", ("arq",)),
}
"""Each optional feature: its extra, what it is called in messages, and the top-level modules it needs."""


def require_extra(module: str, *, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"segno"`` or ``"isal.isal_zlib"``) or raise the one-line error naming ``extra``.

    Args:
        module: The module to import.
        extra: The extra of ``pyproject.toml`` that installs it (``qr``, ``cli``, ``test`` ...).
        feature: What needs it, for the message (default: the extra's entry in `EXTRAS`).

    Raises:
        MissingExtraError: ``module`` (or a package above it) is not installed; an error inside an installed
            module is not hidden.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        if module != missing and not module.startswith(f"{missing}."):
            raise  # the module is there but one of its own imports failed: show that, not a false hint
        what = feature if feature is not None else EXTRAS.get(extra, (extra, ()))[0]
        raise MissingExtraError(what, extra, missing.partition(".")[0]) from None
