"""The KSeF exception codes the bundled spec documents in each operation's 400 table, for spec-driven answers."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from ksef_async._schemas import schema_path
from ksef_async.core.codes import ExceptionCode

__all__ = [
    "UNREADABLE_CONTENT",
    "documented_400_codes",
    "documented_400_description",
]

UNREADABLE_CONTENT = ExceptionCode.UNREADABLE_CONTENT
"""``21001`` "Nieczytelna treść." ({szczegółowy opis błędu}): the request body could not be read."""

_TABLE_ROW = re.compile(r"^\|\s*(\d{4,5})\s*\|([^|]*)\|", re.MULTILINE)  # 9101..9105 (xades) have 4 digits


@functools.cache
def _tables() -> dict[tuple[str, str], dict[int, str]]:
    with schema_path("openapi.json").open(encoding="utf-8") as fh:
        spec: dict[str, Any] = json.load(fh)
    tables: dict[tuple[str, str], dict[int, str]] = {}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            response = operation.get("responses", {}).get("400")
            text = response.get("description", "") if isinstance(response, dict) else ""
            rows: dict[int, str] = {}
            for code, description in _TABLE_ROW.findall(text):
                rows.setdefault(int(code), description.strip())  # POST /auth/token/redeem lists 21301 three times
            tables[(method.upper(), path)] = rows
    return tables


def documented_400_codes(method: str, path: str) -> frozenset[int]:
    """The exception codes listed in the 400 description of ``method path`` (a spec path template).

    Args:
        method: HTTP method, any case.
        path: The path template as in the spec, e.g. ``/invoices/exports``.
    """
    return frozenset(_tables().get((method.upper(), path), {}))


def documented_400_description(method: str, path: str, code: int) -> str | None:
    """The ``ExceptionDescription`` the 400 table of ``method path`` gives ``code`` (None: not listed there).

    The wording is per operation: 21418 is "Przekazany token kontynuacji ma nieprawidłowy format." on most list
    operations and "Przesłany token kontynuacji jest nieprawidłowy." on others.
    """
    return _tables().get((method.upper(), path), {}).get(code)
