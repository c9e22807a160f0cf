"""The attrs validators of every config object: each refusal is a `ConfigurationError` naming class and field."""

from __future__ import annotations

import math
from typing import Any

import attrs

from ksef_async.errors import ConfigurationError

__all__ = ["at_least_one", "fraction", "non_negative", "positive"]


def _name(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """Accept a finite number > 0."""
    if not _is_number(value) or value <= 0:
        raise ConfigurationError(f"{_name(instance, attribute)} must be a finite number > 0, got {value!r}")


def non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """Accept a finite number >= 0."""
    if not _is_number(value) or value < 0:
        raise ConfigurationError(f"{_name(instance, attribute)} must be a finite number >= 0, got {value!r}")


def at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    """Accept an integer >= 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{_name(instance, attribute)} must be an integer >= 1, got {value!r}")


def fraction(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """Accept a number in [0, 1)."""
    if not _is_number(value) or not 0 <= value < 1:
        raise ConfigurationError(f"{_name(instance, attribute)} must be in [0, 1), got {value!r}")
