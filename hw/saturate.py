"""Saturation of a signed value to fewer bits, as logic (the hardware form of
:func:`golden.fixed.saturate`)."""

from __future__ import annotations

from amaranth import Mux, Value

from golden.fixed import smax, smin


def saturate(value: Value, bits: int) -> Value:
    """``value`` (signed) saturated to signed ``bits``, equal to :func:`golden.fixed.saturate`:
    if the bits above ``bits - 1`` all equal the sign the value fits, else the result is the
    limit of the sign (one LUT level per bit, no comparator)."""
    top = value[bits - 1:]
    if len(top) <= 1:
        return value[:bits].as_signed()
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    return Mux(fits, value[:bits].as_signed(), Mux(value[-1], smin(bits), smax(bits)))
