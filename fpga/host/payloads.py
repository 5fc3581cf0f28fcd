"""Converting structured stream payloads to and from the raw words the protocol moves.

A block's payload may be a plain shape or an ``amaranth.lib.data`` layout; the bridge moves raw
bits. :func:`pack` turns a value as the layout describes it (e.g. ``{"data": [3, -1], "tag": 1}``)
into the raw integer, :func:`unpack` turns a raw word back into a ``data.Const`` view whose
fields read as the layout says (``.data[0]``, ``.tag``).
"""

from __future__ import annotations

from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import data


def pack(shape: Any, value: Any) -> int:
    """The raw bits (unsigned int) of ``value`` under ``shape``."""
    if isinstance(shape, data.Layout):
        return shape.const(value).as_value().value
    width = Shape.cast(shape).width
    return int(value) & ((1 << width) - 1)


def unpack(shape: Any, raw: int) -> Any:
    """``raw`` as ``shape`` reads it: a ``data.Const`` for a layout, else a (signed) int."""
    if isinstance(shape, data.Layout):
        return data.Const(shape, raw)
    s = Shape.cast(shape)
    raw &= (1 << s.width) - 1
    return raw - (1 << s.width) if s.signed and raw >> (s.width - 1) else raw


def payload_shape(component, member: str) -> Any:
    """The payload shape (or layout) of stream ``member`` of ``component``."""
    return component.signature.members[member].signature.members["payload"].shape
