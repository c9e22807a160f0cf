"""Locates the bundled official contract (OpenAPI spec and XSDs); nothing is ever fetched from the network."""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["API_VERSION", "schema_path", "schemas_dir"]

API_VERSION = "2.9.0"
"""The KSeF API release of the bundled ``openapi.json`` (its ``info.description``; ``info.version`` is only "v2")."""


@functools.cache
def schemas_dir() -> Path:
    """Return the directory holding `openapi.json` and `xsd/`.

    In a wheel the files live in `ksef_async/_schemas`; in a source checkout (editable install) they are the
    top-level `schemas/` directory.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "_schemas", here.parent / "schemas"):
        if (candidate / "openapi.json").is_file():
            return candidate
    msg = f"bundled schemas not found next to {here}"
    raise FileNotFoundError(msg)


def schema_path(*parts: str) -> Path:
    """Return the path of one bundled schema file, e.g. ``schema_path("xsd", "UPO", "upo-v4-3.xsd")``."""
    path = schemas_dir().joinpath(*parts)
    if not path.is_file():
        msg = f"bundled schema file missing: {path}"
        raise FileNotFoundError(msg)
    return path
