"""LayerNorm on the residual stream, bit-exact in integer arithmetic (no divider per element).

Not yet a hardware block; this defines the arithmetic a later LayerNorm unit must match.
Number formats (``ln = hardware.layernorm``, ``cu = hardware.compute_unit``)::

    x_q [T, D]   signed ln.residual_bits integers, scale s (the model's residual scale)
    per row:
      S = sum_i x_i                               exact
      d_i = D * x_i - S                           exact: D * (x_i - mean), no division
      V = sum_i d_i^2 // D + eps_q                = D^2 * var (floor) + D^2 * eps / s^2 (rounded)
      r = isqrt(2^(2F) // V)                      = floor(2^F / sqrt(V)), F = ln.rsqrt_frac_bits:
                                                    one integer division and one digit-by-digit
                                                    integer square root per row (floor(sqrt(floor
                                                    (a/b))) = floor(sqrt(a/b)), so r is exact)
      n_i = shift_round(d_i * r, F - N)           (x_i - mean) / sqrt(var + eps), N =
                                                    ln.norm_frac_bits fraction bits, |n| <= sqrt(D)
      acc_i = n_i * gamma_i + beta_i              gamma: signed cu.operand_bits (scale
                                                    gamma_scale); beta in accumulator
                                                    units (gamma_scale / 2^N)
    y_q = requantise(acc, out)                    signed cu.operand_bits, scale out_scale

Widths: ``d`` needs ``residual_bits + log2(D) + 1`` bits, ``sum d^2`` up to ``2*residual_bits +
3*log2(D)`` (kept exact: Python integers), ``r`` at most ``F`` bits; ``d * r`` is bounded by
``sqrt(D) * 2^F`` and fits int64. The relative error of ``r`` is below ``1/r``, at most
``sqrt(V) / 2^F`` (1.2e-5 for D = 192, 16-bit residual, F = 40). Rounding of ``n`` and of the
requant follows ``cu.rounding`` (:mod:`golden.fixed`); ``eps_q`` is rounded half up.

:func:`layernorm_float` is the float64 reference; :func:`reference` runs it on the dequantised
input and weights; :func:`accuracy` compares the two in output LSBs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from golden import fixed
from golden.fixed import IntArray
from golden.linear import quantise_tensor, symmetric_scale
from golden.linear import Requant
from moeaccel.config import DesignConfig

FloatArray = npt.NDArray[np.float64]

#: LayerNorm epsilon of the reference model (timm ViT / M3ViT: ``nn.LayerNorm(eps=1e-6)``)
EPS = 1e-6


@dataclass(frozen=True)
class LayerNorm:
    """One LayerNorm: ``gamma_q`` (signed operands, scale ``gamma_scale``), ``beta_q`` in
    accumulator units (``gamma_scale * 2^-norm_frac_bits``), the input (residual) scale, ``eps_q``
    (``D^2 * EPS / in_scale^2`` rounded) and the requant to the output scale."""

    gamma_q: IntArray
    beta_q: IntArray
    gamma_scale: float
    in_scale: float
    eps_q: int
    out_scale: float
    out: Requant

    def gamma(self) -> FloatArray:
        return self.gamma_q * self.gamma_scale

    def beta(self, cfg: DesignConfig) -> FloatArray:
        return self.beta_q * (self.gamma_scale * 2.0 ** -cfg.hardware.layernorm.norm_frac_bits)


def inverse_sqrt(v: int, frac_bits: int) -> int:
    """``floor(2^frac_bits / sqrt(v))`` exactly, for an integer ``v >= 1``."""
    return math.isqrt((1 << (2 * frac_bits)) // v)


def normalise(x_q: npt.ArrayLike, eps_q: int, cfg: DesignConfig) -> IntArray:
    """``(x - mean) / sqrt(var + eps)`` per row with ``norm_frac_bits`` fraction bits (see the
    module docstring); a constant row (``V = 0``) gives zeros."""
    ln, cu = cfg.hardware.layernorm, cfg.hardware.compute_unit
    x = fixed.as_int(x_q)
    lo, hi = fixed.smin(ln.residual_bits), fixed.smax(ln.residual_bits)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"layernorm input outside the signed {ln.residual_bits}-bit residual "
                         "format")
    dim = x.shape[-1]
    d = dim * x - x.sum(axis=-1, keepdims=True)
    sq = (d.astype(object) ** 2).sum(axis=-1)
    r = np.array([inverse_sqrt(max(int(q) // dim + eps_q, 1), ln.rsqrt_frac_bits) for q in sq],
                 dtype=np.int64)
    return fixed.shift_round(d * r[:, None], ln.rsqrt_frac_bits - ln.norm_frac_bits, cu.rounding)


def layernorm(x_q: npt.ArrayLike, ln: LayerNorm, cfg: DesignConfig) -> IntArray:
    """The LayerNorm, bit-exact: ``[T, D]`` residual ints -> ``[T, D]`` operand ints."""
    cu = cfg.hardware.compute_unit
    acc = normalise(x_q, ln.eps_q, cfg) * ln.gamma_q + ln.beta_q
    return fixed.requantise(acc, ln.out.multiplier, ln.out.shift, cu.operand_bits, cu.rounding)


def layernorm_float(x: npt.ArrayLike, gamma: npt.ArrayLike, beta: npt.ArrayLike,
                    eps: float = EPS) -> FloatArray:
    """Float64 reference: ``(x - mean) / sqrt(var + eps) * gamma + beta`` over the last axis."""
    x = np.asarray(x, np.float64)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def reference(x_q: npt.ArrayLike, ln: LayerNorm, cfg: DesignConfig) -> FloatArray:
    """:func:`layernorm_float` on the dequantised input, gamma and beta (real units)."""
    x = fixed.as_int(x_q) * ln.in_scale
    return layernorm_float(x, ln.gamma(), ln.beta(cfg))


def make(gamma: FloatArray, beta: FloatArray, in_scale: float, out_scale: float,
         cfg: DesignConfig) -> LayerNorm:
    """Quantise float ``gamma``/``beta`` for an input of scale ``in_scale`` and an output of
    scale ``out_scale``."""
    ln, bits = cfg.hardware.layernorm, cfg.hardware.compute_unit.operand_bits
    dim = len(gamma)
    g_scale = symmetric_scale(gamma, bits)
    acc_lsb = g_scale * 2.0 ** -ln.norm_frac_bits
    beta_q = np.floor(np.asarray(beta) / acc_lsb + 0.5).astype(np.int64)
    eps_q = int(np.floor(dim * dim * EPS / in_scale ** 2 + 0.5))
    return LayerNorm(quantise_tensor(gamma, g_scale, bits), beta_q, g_scale, in_scale, eps_q,
                     out_scale, Requant.choose(acc_lsb / out_scale, cfg))


def random_weights(dim: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Float ``(gamma, beta)`` of a trained-looking LayerNorm: ``1 + 0.1 N(0,1)``, ``0.1 N(0,1)``.
    """
    return 1.0 + 0.1 * rng.standard_normal(dim), 0.1 * rng.standard_normal(dim)


def accuracy(cfg: DesignConfig, seed: int = 0) -> dict[str, float]:
    """The bit-exact LayerNorm vs float64 on the same quantised input and weights, in output
    LSBs, on rows of random offset and spread filling the residual format's upper half."""
    m, ln_cfg = cfg.model, cfg.hardware.layernorm
    bits = cfg.hardware.compute_unit.operand_bits
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.normal(0, 1, (m.tokens, 1)), rng.uniform(0.2, 3, (m.tokens, 1)),
                   (m.tokens, m.embed_dim))
    in_scale = 2 * symmetric_scale(x, ln_cfg.residual_bits)
    x_q = quantise_tensor(x, in_scale, ln_cfg.residual_bits)
    gamma, beta = random_weights(m.embed_dim, rng)
    out = layernorm_float(x_q * in_scale, gamma, beta)
    ln = make(gamma, beta, in_scale, symmetric_scale(out, bits), cfg)
    err = layernorm(x_q, ln, cfg) - reference(x_q, ln, cfg) / ln.out_scale
    return {"layernorm_rms_err_lsb": float(np.sqrt(np.mean(err ** 2))),
            "layernorm_max_err_lsb": float(np.max(np.abs(err)))}
