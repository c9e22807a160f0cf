"""The one cattrs converter between KSeF JSON (camelCase) and the attrs models (snake_case).

Rules, in the order a reader meets them on the wire:

* names: the JSON name is the camelCase form of the attribute name, or the ``WIRE_NAME`` metadata when that
  form would be wrong (``from`` -> ``from_``, ``maxInvoiceSizeInMB``);
* ``date-time``: ISO 8601 with ``Z`` or an offset and up to 7 fractional digits (KSeF sends
  ``2025-07-11T12:23:56.0154302+00:00``); the offset is kept, the 7th digit (100 ns) is dropped because
  ``datetime`` stops at microseconds; a value without an offset stays naive. Written back with ``isoformat()``;
* ``format: byte``: base64 text on the wire, ``bytes`` in Python; malformed base64 is an error;
* ``number``: ``decimal.Decimal`` built from the shortest text of the JSON number, written back as ``float``
  so the standard ``json`` module can encode it;
* enums: fields are typed ``SomeEnum | str``; a value KSeF added after the bundled spec stays the raw ``str``
  instead of failing the whole response;
* unknown JSON keys are ignored (KSeF adds fields), unless you ask ``make_converter(forbid_extra_keys=True)``
  (tests use it to prove the models cover the spec's examples);
* unstructuring omits optional fields that are ``None`` (KSeF rejects some explicit nulls) but writes ``null``
  for required nullable fields (``KEEP_NULL`` metadata).

Structuring errors are cattrs' ``ClassValidationError`` groups; their notes name the failing field path.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import enum
import types
import typing
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ksef_async.models._meta import KEEP_NULL, WIRE_NAME

__all__ = ["converter", "enum_of", "make_converter", "structure", "unstructure", "wire_name"]

T = TypeVar("T")


def wire_name(field: attrs.Attribute[Any]) -> str:
    """Return the JSON name of a model field."""
    explicit = field.metadata.get(WIRE_NAME)
    if explicit is not None:
        return str(explicit)
    head, *rest = field.name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def enum_of(tp: Any) -> type[enum.StrEnum] | None:
    """Return ``E`` when ``tp`` is ``E | str`` or ``E | str | None`` for a ``StrEnum`` ``E``, else ``None``."""
    if typing.get_origin(tp) not in {typing.Union, types.UnionType}:
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.StrEnum)]
    if len(args) == 2 and len(enums) == 1 and str in args:  # noqa: PLR2004
        return enums[0]
    return None


def _structure_datetime(value: Any, _: type) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 date-time string, got {type(value).__name__}")
    # Python 3.11 parses 'Z' and 1-7 fractional digits (the 7th is truncated).
    return dt.datetime.fromisoformat(value)


def _structure_date(value: Any, _: type) -> dt.date:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 date string, got {type(value).__name__}")
    return dt.date.fromisoformat(value)


def _structure_bytes(value: Any, _: type) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 ({exc})") from None


def _structure_decimal(value: Any, _: type) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | decimal.Decimal):
        raise TypeError(f"expected a JSON number, got {type(value).__name__}")
    # str(float) is the shortest text that round-trips, i.e. the digits KSeF wrote (for <= 15 significant).
    try:
        return decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def _structure_scalar(expected: type) -> Any:
    """Return a hook that accepts only ``expected`` (cattrs would otherwise coerce ``"1"`` to ``1``)."""

    def hook(value: Any, _: type) -> Any:
        if isinstance(value, bool) is not (expected is bool) or not isinstance(value, expected):
            raise TypeError(f"expected {expected.__name__}, got {type(value).__name__}")
        return value

    return hook


def _enum_or_str_hooks(conv: cattrs.Converter) -> None:
    def structure_factory(tp: Any) -> Any:
        enum_cls = enum_of(tp)
        assert enum_cls is not None
        nullable = type(None) in typing.get_args(tp)

        def hook(value: Any, _: type) -> enum.StrEnum | str | None:
            if value is None and nullable:
                return None
            if not isinstance(value, str):
                raise TypeError(f"expected a {enum_cls.__name__} string, got {type(value).__name__}")
            try:
                return enum_cls(value)
            except ValueError:
                return value  # a value newer than the bundled spec: keep it rather than fail the response

        return hook

    def unstructure(value: enum.StrEnum | str) -> str:
        return str(value.value) if isinstance(value, enum.Enum) else value

    conv.register_structure_hook_factory(lambda tp: enum_of(tp) is not None, structure_factory)
    conv.register_unstructure_hook_func(lambda tp: enum_of(tp) is not None, unstructure)
    conv.register_unstructure_hook_func(
        lambda tp: isinstance(tp, type) and issubclass(tp, enum.StrEnum), lambda v: str(v.value)
    )


def _attrs_hooks(conv: cattrs.Converter, *, forbid_extra_keys: bool) -> None:
    def structure_factory(cls: type) -> Any:
        overrides: dict[str, Any] = {f.name: override(rename=wire_name(f)) for f in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=forbid_extra_keys, **overrides)

    def unstructure_factory(cls: type) -> Any:
        overrides: dict[str, Any] = {
            f.name: override(rename=wire_name(f), omit_if_default=f.default is None and not f.metadata.get(KEEP_NULL))
            for f in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, conv, **overrides)

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def make_converter(*, forbid_extra_keys: bool = False) -> cattrs.Converter:
    """Return a converter with the KSeF rules above.

    Args:
        forbid_extra_keys: reject JSON keys no model field claims. Off for real traffic (KSeF adds fields
            without notice); on in tests that check the models against the spec's examples.
    """
    conv = cattrs.Converter()
    conv.register_structure_hook(dt.datetime, _structure_datetime)
    conv.register_unstructure_hook(dt.datetime, dt.datetime.isoformat)
    conv.register_structure_hook(dt.date, _structure_date)
    conv.register_unstructure_hook(dt.date, dt.date.isoformat)
    conv.register_structure_hook(bytes, _structure_bytes)
    conv.register_unstructure_hook(bytes, lambda v: base64.b64encode(v).decode("ascii"))
    conv.register_structure_hook(decimal.Decimal, _structure_decimal)
    conv.register_unstructure_hook(decimal.Decimal, float)
    for scalar in (str, int, bool):
        conv.register_structure_hook(scalar, _structure_scalar(scalar))
    # Models are frozen values, so arrays are tuples in Python and lists on the wire.
    conv.register_unstructure_hook_factory(_is_tuple, lambda tp: conv.gen_unstructure_iterable(tp, list))
    _enum_or_str_hooks(conv)
    _attrs_hooks(conv, forbid_extra_keys=forbid_extra_keys)
    return conv


converter: cattrs.Converter = make_converter()
"""The converter the client and the simulator share: lenient about unknown keys and enum values."""


def structure(data: Any, cls: type[T]) -> T:
    """Build a ``cls`` model from decoded JSON (``dict``/``list``/scalars) with the shared converter."""
    return converter.structure(data, cls)


def unstructure(obj: Any) -> Any:
    """Turn a model (or a tuple/list of models) into JSON-ready data with the shared converter."""
    return converter.unstructure(obj)
