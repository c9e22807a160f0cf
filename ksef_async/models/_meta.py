"""Field-metadata keys shared by the generated models and the converter."""

from __future__ import annotations

from typing import Final

__all__ = ["KEEP_NULL", "WIRE_NAME"]

WIRE_NAME: Final = "ksef_async.wire_name"
"""Metadata key holding the JSON name when it is not the camelCase form of the attribute name."""

KEEP_NULL: Final = "ksef_async.keep_null"
"""Metadata key marking a required-but-nullable field: unstructuring writes ``null`` instead of omitting it."""
