"""Multi-head self-attention for one layer, bit-exact, on the blocks the hardware has.

Dataflow and number formats (``cu = hardware.compute_unit``, ``sm = hardware.softmax``; every GEMM
is :func:`golden.linear.linear` on the shared compute unit)::

    x_q [T, D]      signed operand_bits activations (scale x_scale)
    q, k, v         linear(x_q, W{q,k,v}, b{q,k,v}) requantised to operand_bits
    per head h (head_dim = D / heads):
      s  = q_h @ k_h^T                      exact accumulators (no bias)
      z  = requantise(s) to the softmax input format; the 1/sqrt(head_dim) factor and the q, k
           scales are folded into this requant's multiplier
      {m, R} = golden.softmax.softmax(z): integer row max and reciprocal 1/sum (sm.recip_frac_bits)
      e  = 2^(z - m) per element, in [0, 2): the unnormalised exponentials (the max is in [1, 2)),
           rounded to signed operands with operand_bits - 2 fraction bits (0..127 = 0..1.98)
      a  = e_q @ v_h                         exact accumulators
      n  = shift_round(a * R, recip_frac_bits)   the normalisation fused into the consumer, as in
           the reference design: no divider, one multiply per output by the row's 1/sum
      o_h = requantise(n) to operand_bits
    out_q = linear(concat_h o_h, Wo, bo) requantised to operand_bits

Timing is the compute unit's for the five GEMM groups (``3 * T*D*D``, ``heads * T*T*dh`` twice,
``T*D*D``) plus ``heads * T`` softmax rows of ``T`` elements (see ``sim``).

:func:`random_layer` makes seeded int8 weights and requant parameters calibrated on a float pass;
:func:`reference` is the float64 layer on the same quantised input and weights; :func:`accuracy`
reports the bit-exact layer's error against it in output LSBs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from golden import fixed
from golden.fixed import IntArray
from golden.linear import linear, linear_acc, quantise_tensor, symmetric_scale
from golden.linear import Requant
from golden.softmax import exponent_parts, softmax, softmax_float
from moeaccel.config import DesignConfig

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Projection:
    """One ``D -> D`` projection: int weights ``[D, D]``, bias in accumulator units, weight scale
    and the requant to its output scale."""

    w_q: IntArray
    b_q: IntArray
    w_scale: float
    requant: Requant


@dataclass(frozen=True)
class AttentionLayer:
    """Weights and formats of one attention layer."""

    q: Projection
    k: Projection
    v: Projection
    o: Projection
    scores: Requant
    av: Requant
    x_scale: float
    qkv_scales: tuple[float, float, float]
    head_scale: float
    out_scale: float


def _heads(t: IntArray | FloatArray, heads: int) -> list:
    return np.split(t, heads, axis=-1)


def exp_operands(z_q: IntArray, row_max: IntArray, cfg: DesignConfig) -> IntArray:
    """``2^(z - m)`` of each softmax input as signed operands with ``operand_bits - 2`` fraction
    bits: ``t * 2^(fl - m)`` (from :func:`golden.softmax.exponent_parts`) rounded half up."""
    bits = cfg.hardware.compute_unit.operand_bits
    fl, t = exponent_parts(z_q, cfg.hardware.softmax)
    shift = cfg.hardware.softmax.exp_frac_bits - (bits - 2) + (row_max[..., None] - fl)
    return fixed.saturate(fixed.shift_round(t, shift, "half_up"), bits)


def attention(x_q: npt.ArrayLike, layer: AttentionLayer, cfg: DesignConfig) -> IntArray:
    """The layer, bit-exact (see the module docstring): ``[T, D]`` int -> ``[T, D]`` int."""
    hw, m = cfg.hardware, cfg.model
    cu = hw.compute_unit
    x = fixed.as_int(x_q)
    q, k, v = (linear(x, p.w_q, p.b_q, p.requant.multiplier, p.requant.shift, cu)
               for p in (layer.q, layer.k, layer.v))
    outs = []
    for qh, kh, vh in zip(_heads(q, m.heads), _heads(k, m.heads), _heads(v, m.heads)):
        zero_t = np.zeros(qh.shape[0], dtype=np.int64)
        s = linear_acc(qh, kh.T, zero_t, cu)
        z = fixed.requantise(s, layer.scores.multiplier, layer.scores.shift,
                             hw.softmax.input_bits, cu.rounding)
        row = softmax(z, hw.softmax)
        zero_d = np.zeros(vh.shape[1], dtype=np.int64)
        a = linear_acc(exp_operands(z, row.max_q, cfg), vh, zero_d, cu)
        n = fixed.shift_round(a * row.recip_q[:, None], hw.softmax.recip_frac_bits, cu.rounding)
        outs.append(fixed.requantise(n, layer.av.multiplier, layer.av.shift, cu.operand_bits,
                                     cu.rounding))
    o = layer.o
    return linear(np.concatenate(outs, axis=-1), o.w_q, o.b_q, o.requant.multiplier,
                  o.requant.shift, cu)


def reference(x_q: npt.ArrayLike, layer: AttentionLayer, cfg: DesignConfig) -> FloatArray:
    """Float64 attention on the same quantised input and weights (real units, no requantisation)."""
    return reference_float(fixed.as_int(x_q) * layer.x_scale, layer, cfg)


def reference_float(x: FloatArray, layer: AttentionLayer, cfg: DesignConfig) -> FloatArray:
    """:func:`reference` on a real-valued input ``x [T, D]`` (no input quantisation)."""
    m = cfg.model

    def proj(t: FloatArray, p: Projection, in_scale: float) -> FloatArray:
        return t @ (p.w_q * p.w_scale) + p.b_q * in_scale * p.w_scale

    q, k, v = (proj(x, p, layer.x_scale) for p in (layer.q, layer.k, layer.v))
    outs = [softmax_float(qh @ kh.T / np.sqrt(m.head_dim)) @ vh
            for qh, kh, vh in zip(_heads(q, m.heads), _heads(k, m.heads), _heads(v, m.heads))]
    return proj(np.concatenate(outs, axis=-1), layer.o, layer.head_scale)


def random_layer(cfg: DesignConfig, seed: int = 0) -> tuple[IntArray, AttentionLayer]:
    """A seeded random layer and input ``(x_q, layer)`` (input: standard normal, like a
    LayerNorm output, quantised to its peak; layer: :func:`build_layer`)."""
    bits = cfg.hardware.compute_unit.operand_bits
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.model.tokens, cfg.model.embed_dim))
    x_scale = symmetric_scale(x, bits)
    x_q = quantise_tensor(x, x_scale, bits)
    return x_q, build_layer(x_q, x_scale, cfg, rng)


def build_layer(x_q: IntArray, x_scale: float, cfg: DesignConfig,
                rng: np.random.Generator) -> AttentionLayer:
    """Seeded random weights (normal ``1/sqrt(D)``, biases ``0.1 N(0,1)``) for a layer whose
    input is ``x_q`` (scale ``x_scale``); every scale is calibrated on a float pass of the
    quantised layer on ``x_q`` so nothing saturates on it."""
    m, hw = cfg.model, cfg.hardware
    bits = hw.compute_unit.operand_bits
    d = m.embed_dim
    xd = fixed.as_int(x_q) * x_scale

    def weights(in_scale: float, in_float: FloatArray) -> tuple[IntArray, IntArray, float, float]:
        w = rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, d))
        b = 0.1 * rng.standard_normal(d)
        w_scale = symmetric_scale(w, bits)
        w_q = quantise_tensor(w, w_scale, bits)
        b_q = np.floor(b / (in_scale * w_scale) + 0.5).astype(np.int64)
        out = in_float @ (w_q * w_scale) + b_q * in_scale * w_scale
        return w_q, b_q, w_scale, symmetric_scale(out, bits)

    qkv = [weights(x_scale, xd) for _ in range(3)]
    projections = [Projection(w_q, b_q, ws, Requant.choose(x_scale * ws / os, cfg))
                   for w_q, b_q, ws, os in qkv]
    sq, sk, sv = (os for *_, os in qkv)
    exp_lsb = 2.0 ** -(bits - 2)
    scores = Requant.choose(sq * sk / np.sqrt(m.head_dim) * (1 << hw.softmax.input_frac_bits), cfg)

    # Calibrate the A.V output scale and the projection on a float pass of the quantised path.
    qf, kf, vf = ((xd @ (w_q * ws) + b_q * x_scale * ws) for w_q, b_q, ws, _ in qkv)
    heads_f = np.concatenate(
        [softmax_float(qh @ kh.T / np.sqrt(m.head_dim)) @ vh
         for qh, kh, vh in zip(_heads(qf, m.heads), _heads(kf, m.heads), _heads(vf, m.heads))], -1)
    head_scale = symmetric_scale(heads_f, bits)
    av = Requant.choose(exp_lsb * sv / head_scale, cfg)
    wo_q, bo_q, wo_scale, out_scale = weights(head_scale, heads_f)
    o = Projection(wo_q, bo_q, wo_scale, Requant.choose(head_scale * wo_scale / out_scale, cfg))
    return AttentionLayer(*projections, o, scores, av, x_scale, (sq, sk, sv), head_scale, out_scale)


def accuracy(cfg: DesignConfig, seed: int = 0) -> dict[str, float]:
    """The bit-exact layer vs :func:`reference`, in output LSBs (RMS and max). The error includes
    the int8 requantisation of q, k, v, the exponentials and the heads, which the float
    reference does not have: it is the whole int8 attention's error, not one block's."""
    x_q, layer = random_layer(cfg, seed)
    got = attention(x_q, layer, cfg)
    err = got - reference(x_q, layer, cfg) / layer.out_scale
    return {"attention_rms_err_lsb": float(np.sqrt(np.mean(err ** 2))),
            "attention_max_err_lsb": float(np.max(np.abs(err)))}
