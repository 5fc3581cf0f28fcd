"""A product with a constant as logic: shifted copies of the value, added in LUT carry chains.

Yosys maps ``value * constant`` to a hard multiplier, with no register at its input or output;
on ECP5 that costs ~9 ns of routing and DSP delay in one cycle (see :mod:`hw.multiplier`). A
constant with few set bits is cheaper and faster as a couple of adders."""

from __future__ import annotations

from amaranth import Const, Value


def times_constant(value: Value, constant: int) -> Value:
    """``value * constant`` (``constant`` >= 0) as the sum of ``value << i`` over the set bits
    ``i`` of ``constant``."""
    if constant < 0:
        raise ValueError(f"constant must be >= 0, not {constant}")
    return sum((value << i for i in range(constant.bit_length()) if constant >> i & 1), Const(0))
