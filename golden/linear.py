"""The compute unit's arithmetic: quantised linear layers, bit-exact (``hw/compute_unit.py``).

Number formats (``c = hardware.compute_unit``):

* activations ``x_q [T, K]`` and weights ``w_q [K, N]``: signed ``c.operand_bits`` integers
  (symmetric int8 for the shipped presets; scales are per tensor and live outside the unit);
* bias ``bias_q [N]``: signed integers in accumulator units (scale ``sx * sw``), with
  ``|bias| < 2**(c.accumulator_bits - 2)``;
* accumulator: signed ``c.accumulator_bits``. **It cannot overflow**: ``validate()`` requires
  ``c.max_dim * 2**(2*operand_bits - 2) <= 2**(accumulator_bits - 2)`` and every GEMM has
  ``k <= c.max_dim``, so ``bias + sum_k x*w`` always fits. The functions here check those bounds
  and raise ``ValueError`` instead of wrapping;
* output: ``requantise(acc, multiplier, shift, out_bits, c.rounding)`` from
  :mod:`golden.fixed` - round (``half_up`` or ``truncate``) then saturate to ``out_bits``
  (``operand_bits`` by default; a wider format, e.g. GELU's input, on request). ``multiplier`` is
  unsigned below ``2**c.requant_multiplier_bits``, ``shift`` in ``0..c.requant_max_shift``.

MoE options of the same unit:

* gather: the rows of a GEMM are activation rows selected by token ids from an expert queue
  (:func:`gather`, :func:`expert_linear`);
* scatter-accumulate: ``out[token] += gate * y`` (:func:`scatter_accumulate`). ``gate`` is a
  router probability, unsigned with ``hardware.softmax.prob_frac_bits`` fraction bits; ``y`` the
  expert's int output. The product is kept **exact** (no rounding; it carries ``prob_frac_bits``
  fraction bits) and added into a signed ``accumulator_bits`` output accumulator, saturating
  (it cannot saturate for fewer than ``2**(accumulator_bits - 1 - operand_bits - prob_frac_bits)``
  contributions per token, 512 for the presets). :func:`scatter_finalise` rounds the accumulator
  once, at the end, back to the output format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from golden.fixed import (ArrayLike, IntArray, as_int, choose_requant, quantise, requantise,
                          saturate, shift_round, smax, smin)
from moeaccel.config import ComputeUnitConfig, DesignConfig

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Bit-exact model
# --------------------------------------------------------------------------------------------
def bias_limit(cu: ComputeUnitConfig) -> int:
    """Bias magnitudes must stay strictly below this (``2**(accumulator_bits - 2)``)."""
    return 1 << (cu.accumulator_bits - 2)


def _check_range(name: str, v: IntArray, lo: int, hi: int) -> None:
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"{name} outside [{lo}, {hi}] (min {v.min()}, max {v.max()})")


def linear_acc(x_q: ArrayLike, w_q: ArrayLike, bias_q: ArrayLike,
               cu: ComputeUnitConfig) -> IntArray:
    """The accumulators: ``bias_q + x_q @ w_q`` (``[T, K] x [K, N] -> [T, N]``), exact int64,
    after checking operand, bias and dimension bounds (so the hardware's accumulator cannot
    overflow)."""
    x, w, b = as_int(x_q), as_int(w_q), as_int(bias_q)
    if x.ndim != 2 or w.ndim != 2 or b.shape != (w.shape[1],) or x.shape[1] != w.shape[0]:
        raise ValueError(f"shapes x{x.shape} w{w.shape} bias{b.shape} do not form [T,K]x[K,N]+[N]")
    for name, v in (("x_q", x), ("w_q", w)):
        _check_range(name, v, smin(cu.operand_bits), smax(cu.operand_bits))
    lim = bias_limit(cu)
    _check_range("bias_q", b, -lim + 1, lim - 1)
    for name, d in zip("mkn", (x.shape[0], x.shape[1], w.shape[1])):
        if not 1 <= d <= cu.max_dim:
            raise ValueError(f"GEMM dimension {name}={d} outside 1..max_dim={cu.max_dim}")
    return x @ w + b[None, :]


@dataclass(frozen=True)
class Requant:
    """A requantisation ``saturate(shift_round(v * multiplier, shift))``; ``scale`` is the real
    factor it approximates (``multiplier / 2**shift``)."""

    multiplier: int
    shift: int
    scale: float

    @classmethod
    def choose(cls, scale: float, cfg: DesignConfig) -> "Requant":
        """The closest parameters the compute unit's requantiser can hold."""
        cu = cfg.hardware.compute_unit
        m, s = choose_requant(scale, cu.requant_multiplier_bits, cu.requant_max_shift)
        return cls(m, s, scale)


def check_requant(multiplier: int, shift: int, cu: ComputeUnitConfig) -> None:
    """Raise ``ValueError`` unless ``(multiplier, shift)`` fits the unit's command fields."""
    if not 0 <= multiplier < 1 << cu.requant_multiplier_bits:
        raise ValueError(f"multiplier {multiplier} outside 0..2**{cu.requant_multiplier_bits}-1")
    if not 0 <= shift <= cu.requant_max_shift:
        raise ValueError(f"shift {shift} outside 0..{cu.requant_max_shift}")


def linear(x_q: ArrayLike, w_q: ArrayLike, bias_q: ArrayLike, multiplier: int, shift: int,
           cu: ComputeUnitConfig, out_bits: int | None = None) -> IntArray:
    """The unit's output: ``requantise(bias + x @ w, multiplier, shift, out_bits, rounding)``."""
    check_requant(multiplier, shift, cu)
    acc = linear_acc(x_q, w_q, bias_q, cu)
    return requantise(acc, multiplier, shift, out_bits or cu.operand_bits, cu.rounding)


def gather(x_q: ArrayLike, token_ids: ArrayLike) -> IntArray:
    """Rows of the activation memory ``x_q [T, K]`` selected by an expert queue's token ids."""
    x, ids = as_int(x_q), as_int(token_ids)
    if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= x.shape[0])):
        raise ValueError(f"token ids must be a 1-D list in 0..{x.shape[0] - 1}")
    return x[ids]


def expert_linear(x_q: ArrayLike, token_ids: ArrayLike, w_q: ArrayLike, bias_q: ArrayLike,
                  multiplier: int, shift: int, cu: ComputeUnitConfig,
                  out_bits: int | None = None) -> IntArray:
    """:func:`linear` over the gathered rows ``x_q[token_ids]`` (one output row per queue entry)."""
    return linear(gather(x_q, token_ids), w_q, bias_q, multiplier, shift, cu, out_bits)


def scatter_accumulate(out_acc: ArrayLike, token_ids: ArrayLike, gates: ArrayLike, y_q: ArrayLike,
                       cfg: DesignConfig) -> IntArray:
    """``out[token] += gate * y`` for each queue entry, in queue order, returning the new output
    accumulator ``[T, N]`` (signed ``accumulator_bits``, ``prob_frac_bits`` fraction bits).

    ``gates`` are unsigned probabilities in ``[0, 2**prob_frac_bits]``; products are exact and
    each addition saturates to ``accumulator_bits``. A token may appear more than once.
    """
    cu, frac = cfg.hardware.compute_unit, cfg.hardware.softmax.prob_frac_bits
    out = as_int(out_acc).copy()
    ids, g, y = as_int(token_ids), as_int(gates), as_int(y_q)
    if ids.ndim != 1 or g.shape != ids.shape or y.shape != (ids.size, out.shape[1]):
        raise ValueError(f"shapes ids{ids.shape} gates{g.shape} y{y.shape} out{out.shape} mismatch")
    _check_range("gates", g, 0, 1 << frac)
    _check_range("token_ids", ids, 0, out.shape[0] - 1)
    for tok, gate, row in zip(ids, g, y):
        out[tok] = saturate(out[tok] + gate * row, cu.accumulator_bits)
    return out


def scatter_finalise(out_acc: ArrayLike, cfg: DesignConfig, out_bits: int | None = None) -> IntArray:
    """The scatter accumulator back in the expert output's format: drop the gate's
    ``prob_frac_bits`` fraction bits with the unit's rounding, then saturate to ``out_bits``
    (``operand_bits`` by default)."""
    cu = cfg.hardware.compute_unit
    frac = cfg.hardware.softmax.prob_frac_bits
    return saturate(shift_round(out_acc, frac, cu.rounding), out_bits or cu.operand_bits)


# --------------------------------------------------------------------------------------------
# Float references and the float-in / float-out wrapper
# --------------------------------------------------------------------------------------------
def linear_float(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> FloatArray:
    """Float64 reference ``x @ w + b``."""
    return np.asarray(x, np.float64) @ np.asarray(w, np.float64) + np.asarray(b, np.float64)[None, :]


def symmetric_scale(x: ArrayLike, bits: int) -> float:
    """Per-tensor symmetric scale: ``max|x| / (2**(bits-1) - 1)`` (1.0 for an all-zero tensor)."""
    peak = float(np.max(np.abs(np.asarray(x, np.float64)), initial=0.0))
    return peak / smax(bits) if peak > 0 else 1.0


def quantise_tensor(x: ArrayLike, scale: float, bits: int) -> IntArray:
    """``x / scale`` rounded half up and saturated to signed ``bits``."""
    return quantise(np.asarray(x, np.float64) / scale, 0, bits)


@dataclass(frozen=True)
class QuantisedLinear:
    """One run of the bit-exact unit on float data: every quantity the run used."""

    x_q: IntArray
    w_q: IntArray
    bias_q: IntArray
    x_scale: float
    w_scale: float
    y_scale: float
    multiplier: int
    shift: int
    y_q: IntArray

    @property
    def y(self) -> FloatArray:
        """The dequantised output."""
        return self.y_q.astype(np.float64) * self.y_scale

    def exact_lsb(self) -> FloatArray:
        """The exact real output of the same quantised inputs, in output LSBs
        (``(bias_q + x_q @ w_q) * x_scale * w_scale / y_scale``), before rounding/saturation."""
        acc = (self.x_q @ self.w_q + self.bias_q[None, :]).astype(np.float64)
        return acc * (self.x_scale * self.w_scale / self.y_scale)


def linear_quantised(x: ArrayLike, w: ArrayLike, b: ArrayLike, cu: ComputeUnitConfig,
                     y_scale: float | None = None, out_bits: int | None = None) -> QuantisedLinear:
    """Float in, float out through the bit-exact unit: symmetric per-tensor scales for ``x`` and
    ``w``, bias quantised to accumulator units, output scale ``y_scale`` (default: fit the float
    reference's peak), requant ``(multiplier, shift)`` from :func:`golden.fixed.choose_requant`."""
    bits = cu.operand_bits
    ob = out_bits or bits
    sx, sw = symmetric_scale(x, bits), symmetric_scale(w, bits)
    if y_scale is None:
        y_scale = symmetric_scale(linear_float(x, w, b), ob)
    lim = bias_limit(cu) - 1
    bias_q = np.clip(np.floor(np.asarray(b, np.float64) / (sx * sw) + 0.5), -lim, lim).astype(np.int64)
    x_q, w_q = quantise_tensor(x, sx, bits), quantise_tensor(w, sw, bits)
    multiplier, shift = choose_requant(sx * sw / y_scale, cu.requant_multiplier_bits,
                                       cu.requant_max_shift)
    y_q = linear(x_q, w_q, bias_q, multiplier, shift, cu, ob)
    return QuantisedLinear(x_q, w_q, bias_q, sx, sw, y_scale, multiplier, shift, y_q)


def accuracy(cfg: DesignConfig, seed: int = 0) -> dict[str, float]:
    """Output error of the unit in output LSBs against the exact result of the same quantised
    inputs, on a random ``tokens x embed_dim x expert_hidden`` layer: RMS and max over the
    outputs that did not saturate (the bound is 0.5 LSB of rounding plus the multiplier's
    approximation error; ``truncate`` rounding gives up to 1 LSB), plus the saturated count and
    the error of the dequantised output vs the float64 reference on the unquantised inputs."""
    m = cfg.model
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m.tokens, m.embed_dim))
    w = rng.standard_normal((m.embed_dim, m.expert_hidden)) / np.sqrt(m.embed_dim)
    b = 0.1 * rng.standard_normal(m.expert_hidden)
    run = linear_quantised(x, w, b, cfg.hardware.compute_unit)
    exact = run.exact_lsb()
    ob = cfg.hardware.compute_unit.operand_bits
    inside = (exact > smin(ob) - 0.5) & (exact < smax(ob) + 0.5)
    err = run.y_q[inside] - exact[inside]
    ref = linear_float(x, w, b)
    return {
        "outputs": float(exact.size),
        "saturated": float(exact.size - inside.sum()),
        "rms_lsb": float(np.sqrt(np.mean(err ** 2))),
        "max_lsb": float(np.max(np.abs(err))),
        "float_rms_rel": float(np.sqrt(np.mean((run.y - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))),
    }
