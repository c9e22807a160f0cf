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
]

UNREADABLE_CONTENT = ExceptionCode.UNREADABLE_CONTENT
"""``21001`` "Nieczytelna treść." ({szczegółowy opis błędu}): the request body could not be read."""

_TABLE_ROW = re.compile(r"^\|\s*(\d{5})\s*\|", re.MULTILINE)


@functools.cache
def _codes_by_operation() -> dict[tuple[str, str], frozenset[int]]:
    with schema_path("openapi.json").open(encoding="utf-8") as fh:
        spec: dict[str, Any] = json.load(fh)
    table: dict[tuple[str, str], frozenset[int]] = {}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            response = operation.get("responses", {}).get("400")
            text = response.get("description", "") if isinstance(response, dict) else ""
            table[(method.upper(), path)] = frozenset(int(code) for code in _TABLE_ROW.findall(text))
    return table


def documented_400_codes(method: str, path: str) -> frozenset[int]:
    """The exception codes listed in the 400 description of ``method path`` (a spec path template).

    Args:
        method: HTTP method, any case.
        path: The path template as in the spec, e.g. ``/invoices/exports``.
    """
    return _codes_by_operation().get((method.upper(), path), frozenset())
