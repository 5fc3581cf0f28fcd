"""Fixed-point primitives every golden block is built from (bit-exact, integer NumPy arithmetic).

Conventions used across ``golden`` and matched by ``hw``:

* A signed fixed-point value with ``bits`` total bits and ``frac`` fraction bits is stored as an
  ``int64`` integer ``q``; its real value is ``q / 2**frac``. Its range is
  ``[-2**(bits-1), 2**(bits-1) - 1]``.
* :func:`shift_round` divides by ``2**shift``: ``"half_up"`` adds ``2**(shift-1)`` then shifts
  arithmetically right (round half towards +inf, one adder in hardware); ``"truncate"`` shifts
  only (floor). A negative shift is a left shift (exact).
* :func:`saturate` clamps to the signed range of ``bits`` (no wrap-around, unlike the reference
  design).
* :func:`requantise` is the compute unit's output stage:
  ``saturate(shift_round(acc * multiplier, shift), out_bits)``.

All functions accept scalars or arrays and return ``np.int64`` arrays.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
ArrayLike = npt.ArrayLike


def as_int(x: ArrayLike) -> IntArray:
    """``x`` as an int64 array; refuses non-integral floats so no rounding happens silently."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.floor(arr) == arr):
            raise ValueError("as_int: non-integral value; quantise() floats first")
    return arr.astype(np.int64)


def smin(bits: int) -> int:
    """Smallest signed value of ``bits`` bits."""
    return -(1 << (bits - 1))


def smax(bits: int) -> int:
    """Largest signed value of ``bits`` bits."""
    return (1 << (bits - 1)) - 1


def umax(bits: int) -> int:
    """Largest unsigned value of ``bits`` bits."""
    return (1 << bits) - 1


def saturate(x: ArrayLike, bits: int) -> IntArray:
    """Clamp to the signed ``bits``-bit range."""
    return np.clip(as_int(x), smin(bits), smax(bits))


def saturate_unsigned(x: ArrayLike, bits: int) -> IntArray:
    """Clamp to the unsigned ``bits``-bit range ``[0, 2**bits - 1]``."""
    return np.clip(as_int(x), 0, umax(bits))


def wrap(x: ArrayLike, bits: int) -> IntArray:
    """Two's-complement wrap-around to ``bits`` bits (what a register of that width holds)."""
    v = as_int(x) & umax(bits)
    return np.where(v > smax(bits), v - (1 << bits), v)


def shift_round(x: ArrayLike, shift: ArrayLike, rounding: str = "half_up") -> IntArray:
    """``x / 2**shift`` rounded as ``rounding`` (``"half_up"`` or ``"truncate"``).

    ``shift`` may be an array (one shift per element, broadcast against ``x``); a negative shift
    is an exact left shift."""
    if rounding not in ("half_up", "truncate"):
        raise ValueError(f"unknown rounding mode {rounding!r}")
    v = as_int(x)
    s = np.asarray(shift, dtype=np.int64)
    right = np.maximum(s, 0)
    if rounding == "half_up":
        v = v + np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    return np.where(s >= 0, v >> right, v << np.maximum(-s, 0))


def requantise(acc: ArrayLike, multiplier: int, shift: int, out_bits: int,
               rounding: str = "half_up") -> IntArray:
    """The compute unit's output stage: ``saturate(shift_round(acc * multiplier, shift), out_bits)``.

    ``multiplier`` is an unsigned integer (at most the config's ``requant_multiplier_bits``),
    ``shift`` at most ``requant_max_shift``; the product is exact in 64 bits for the widths the
    config allows.
    """
    return saturate(shift_round(as_int(acc) * int(multiplier), shift, rounding), out_bits)


def quantise(x: ArrayLike, frac: int, bits: int) -> IntArray:
    """Float to signed fixed point: round half up and saturate, i.e.
    ``saturate(floor(x * 2**frac + 0.5), bits)``, the same rule as :func:`shift_round`."""
    scaled = np.floor(np.asarray(x, dtype=np.float64) * (1 << frac) + 0.5)
    return saturate(scaled, bits)


def dequantise(q: ArrayLike, frac: int) -> npt.NDArray[np.float64]:
    """Signed fixed point to float: ``q / 2**frac``."""
    return np.asarray(q, dtype=np.float64) / (1 << frac)


def choose_requant(scale: float, multiplier_bits: int, max_shift: int) -> tuple[int, int]:
    """Integer ``(multiplier, shift)`` with ``multiplier / 2**shift`` closest to ``scale`` (> 0),
    using as many multiplier bits as allowed."""
    if not scale > 0:
        raise ValueError(f"requantisation scale must be positive, got {scale}")
    best = (1, 0)
    best_err = float("inf")
    for shift in range(max_shift + 1):
        m = int(np.floor(scale * (1 << shift) + 0.5))
        if m >= 1 << multiplier_bits:
            break
        if m < 1:
            continue
        err = abs(m / (1 << shift) - scale)
        if err < best_err:
            best, best_err = (m, shift), err
    return best
