"""The whole reference model (M3ViT: pre-LayerNorm ViT blocks, MoE on ``model.moe_layers``),
bit-exact, built only from the golden blocks.

Dataflow and number formats (``ln = hardware.layernorm``, ``cu = hardware.compute_unit``)::

    x_q [T, D]     the residual stream: signed ln.residual_bits integers, ONE scale for the whole
                   model (``ModelWeights.res_scale``), so residual adds need no rescaling of x
    per block l (model.layers of them):
      h = golden.layernorm.layernorm(x, ln1)      signed operand_bits, scale = attention x_scale
      x = residual_add(x, golden.attention.attention(h))
      h = golden.layernorm.layernorm(x, ln2)      signed operand_bits, scale = FFN x_scale
      if l in model.moe_layers:
          y = golden.moe.moe_layer(h, moe, task).out_q     the task's router (task-level gating)
      else:
          y = golden.moe.expert_ffn(h, mlp)       the dense MLP: one always-active expert
                                                  of model.mlp_hidden (D -> mlp_hidden -> D)
      x = residual_add(x, y)
    out_q = layernorm(x, norm)                    the final LayerNorm; signed operand_bits

``residual_add(x, y) = saturate(x + requantise(y, add), residual_bits)``: the sublayer output
(operand_bits, its own ``out_scale``) is brought to the residual scale by the sublayer's
:class:`golden.linear.Requant` ``add`` (``out_scale / res_scale``, rounded with ``cu.rounding``,
saturated to ``residual_bits``), then added with saturation. Every rounding is
:mod:`golden.fixed`'s.

:func:`random_model` makes seeded weights calibrated on a float pass; :func:`reference` is the
float64 model on the same quantised input and weights; :func:`accuracy` the end-to-end error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from golden import attention, fixed, layernorm, moe, router
from golden.attention import AttentionLayer
from golden.fixed import IntArray
from golden.layernorm import LayerNorm, layernorm_float
from golden.linear import quantise_tensor, symmetric_scale
from golden.linear import Requant
from golden.moe import Expert, MoeLayer
from moeaccel.config import DesignConfig

FloatArray = npt.NDArray[np.float64]

#: the residual scale is this many times the calibration run's residual peak (1 bit of headroom)
RESIDUAL_HEADROOM = 2.0


@dataclass(frozen=True)
class DenseMlp:
    """The dense MLP of a non-MoE block: one :class:`golden.moe.Expert` with ``mlp_hidden``
    hidden units, and the scales of its input, GELU activations and output."""

    expert: Expert
    x_scale: float
    act_scale: float
    out_scale: float


@dataclass(frozen=True)
class Block:
    """One transformer block: LayerNorm, attention and its residual requant, LayerNorm, the
    FFN (dense MLP or MoE layer) and its residual requant."""

    ln1: LayerNorm
    attn: AttentionLayer
    attn_add: Requant
    ln2: LayerNorm
    ffn: DenseMlp | MoeLayer
    ffn_add: Requant


@dataclass(frozen=True)
class ModelWeights:
    """Every block, the final LayerNorm and the residual stream's scale."""

    blocks: tuple[Block, ...]
    norm: LayerNorm
    res_scale: float


@dataclass(frozen=True)
class LayerRouting:
    """What the router of MoE block ``layer`` did: tokens queued per expert, slots dropped by
    the capacity limit, and the full :class:`golden.router.Routing`."""

    layer: int
    counts: IntArray
    dropped: int
    routing: router.Routing


@dataclass(frozen=True)
class ModelResult:
    """``out_q``: the final LayerNorm's output (signed operand_bits, scale
    ``weights.norm.out_scale``); ``residual_q``: the residual stream after the last block
    (residual_bits, ``weights.res_scale``); ``routing``: one entry per MoE block, in order."""

    out_q: IntArray
    residual_q: IntArray
    routing: tuple[LayerRouting, ...]

    def trace(self, cfg: DesignConfig) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The router decisions as a routing trace for the simulator (``sim.workloads.traces``
        format: per MoE layer, ``(experts [T, top_k] int32, -1 for a null expert; gates float32)``);
        dropped slots keep their expert, the simulator applies the capacity limit itself."""
        one = float(1 << cfg.hardware.softmax.prob_frac_bits)
        return {r.layer: (np.where(r.routing.ids < cfg.model.experts, r.routing.ids, -1)
                          .astype(np.int32), (r.routing.gates / one).astype(np.float32))
                for r in self.routing}


# --------------------------------------------------------------------------------------------
# Bit-exact model
# --------------------------------------------------------------------------------------------
def residual_add(x_q: IntArray, y_q: IntArray, add: Requant, cfg: DesignConfig) -> IntArray:
    """``saturate(x + requantise(y, add), residual_bits)`` (see the module docstring)."""
    bits, cu = cfg.hardware.layernorm.residual_bits, cfg.hardware.compute_unit
    y = fixed.requantise(y_q, add.multiplier, add.shift, bits, cu.rounding)
    return fixed.saturate(x_q + y, bits)


def _check_task(task: int, cfg: DesignConfig) -> None:
    if not 0 <= task < cfg.model.tasks:
        raise ValueError(f"task {task} outside 0..{cfg.model.tasks - 1}")


def model(x_q: npt.ArrayLike, weights: ModelWeights, cfg: DesignConfig,
          task: int = 0) -> ModelResult:
    """The whole model, bit-exact: residual-format ``[T, D]`` input -> :class:`ModelResult`."""
    _check_task(task, cfg)
    x = fixed.saturate(x_q, cfg.hardware.layernorm.residual_bits)
    if not np.array_equal(x, fixed.as_int(x_q)):
        raise ValueError(f"model input outside signed {cfg.hardware.layernorm.residual_bits} bits")
    routing = []
    for i, b in enumerate(weights.blocks):
        x = residual_add(x, attention.attention(layernorm.layernorm(x, b.ln1, cfg), b.attn, cfg),
                         b.attn_add, cfg)
        h = layernorm.layernorm(x, b.ln2, cfg)
        if isinstance(b.ffn, MoeLayer):
            res = moe.moe_layer(h, b.ffn, cfg, task)
            routing.append(LayerRouting(i, res.counts, res.dropped, res.routing))
            y = res.out_q
        else:
            y = moe.expert_ffn(h, b.ffn.expert, cfg)
        x = residual_add(x, y, b.ffn_add, cfg)
    return ModelResult(layernorm.layernorm(x, weights.norm, cfg), x, tuple(routing))


# --------------------------------------------------------------------------------------------
# Float64 reference on the same quantised input and weights
# --------------------------------------------------------------------------------------------
def _ln_float(x: FloatArray, ln: LayerNorm, cfg: DesignConfig) -> FloatArray:
    return layernorm_float(x, ln.gamma(), ln.beta(cfg))


def _ffn_float(h: FloatArray, ffn: DenseMlp | MoeLayer, cfg: DesignConfig, task: int) -> FloatArray:
    if isinstance(ffn, MoeLayer):
        return moe.reference_float(h, ffn, cfg, task)
    return moe.float_expert(ffn.expert, ffn.x_scale, ffn.act_scale)(h)


@dataclass(frozen=True)
class FloatResult:
    """The float64 model's output and last residual (real units) and, per MoE block, the
    experts its float router chose (``[T, top_k]``, best first)."""

    out: FloatArray
    residual: FloatArray
    expert_ids: tuple[IntArray, ...]


def reference(x_q: npt.ArrayLike, weights: ModelWeights, cfg: DesignConfig,
              task: int = 0) -> FloatResult:
    """Float64 model on the dequantised input and weights, no intermediate quantisation (float
    LayerNorm, attention, GELU, softmax and routing by :func:`golden.moe.reference_float`)."""
    _check_task(task, cfg)
    x = fixed.as_int(x_q) * weights.res_scale
    ids = []
    for b in weights.blocks:
        x = x + attention.reference_float(_ln_float(x, b.ln1, cfg), b.attn, cfg)
        h = _ln_float(x, b.ln2, cfg)
        if isinstance(b.ffn, MoeLayer):
            ids.append(router.select_float(h @ (b.ffn.gate_q[task] * b.ffn.gate_scale), cfg)[0])
        x = x + _ffn_float(h, b.ffn, cfg, task)
    return FloatResult(_ln_float(x, weights.norm, cfg), x, tuple(ids))


# --------------------------------------------------------------------------------------------
# Seeded random model
# --------------------------------------------------------------------------------------------
def _calibrated_ln(x: FloatArray, cfg: DesignConfig,
                   rng: np.random.Generator) -> tuple[tuple, IntArray, float]:
    """Random LayerNorm weights for the float residual ``x``: ``((gamma, beta, out_scale),
    h_q, out_scale)`` where ``h_q`` is the float LayerNorm output (quantised weights) quantised
    to its own peak, ``out_scale``."""
    bits = cfg.hardware.compute_unit.operand_bits
    gamma, beta = layernorm.random_weights(cfg.model.embed_dim, rng)
    draft = layernorm.make(gamma, beta, 1.0, 1.0, cfg)   # gamma_q/beta_q do not depend on scales
    h = _ln_float(x, draft, cfg)
    scale = symmetric_scale(h, bits)
    return (gamma, beta, scale), quantise_tensor(h, scale, bits), scale


def _dense_mlp(h_q: IntArray, x_scale: float, cfg: DesignConfig,
               rng: np.random.Generator) -> DenseMlp:
    raw = [moe.random_ffn_weights(cfg.model.embed_dim, cfg.model.mlp_hidden, rng)]
    partial, act_scale, out_peak = moe.calibrate_experts(raw, h_q, x_scale, cfg)
    out_scale = out_peak / fixed.smax(cfg.hardware.compute_unit.operand_bits)
    (expert,) = moe.make_experts(partial, x_scale, act_scale, out_scale, cfg)
    return DenseMlp(expert, x_scale, act_scale, out_scale)


def random_model(cfg: DesignConfig, seed: int = 0) -> tuple[IntArray, ModelWeights]:
    """A seeded random model and input ``(x_q, weights)``.

    The input (the patch embeddings) is standard normal. Weights are drawn block by block on a
    float pass of task 0: each LayerNorm's output scale is the peak of its float output, each
    sublayer is built by :func:`golden.attention.build_layer`, :func:`golden.moe.build_layer`
    or (dense MLP) :func:`golden.moe.calibrate_experts` on that quantised output, and the float
    residual is advanced with the sublayer's float output. The residual scale is
    :data:`RESIDUAL_HEADROOM` times the largest residual magnitude seen, over ``residual_bits``.
    """
    m, ln_cfg = cfg.model, cfg.hardware.layernorm
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((m.tokens, m.embed_dim))
    x = x0
    peak = float(np.abs(x).max())
    drafts = []
    for i in range(m.layers):
        ln1, h_q, s = _calibrated_ln(x, cfg, rng)
        attn = attention.build_layer(h_q, s, cfg, rng)
        x = x + attention.reference(h_q, attn, cfg)
        ln2, h_q, s = _calibrated_ln(x, cfg, rng)
        if i in m.moe_layers:
            ffn: DenseMlp | MoeLayer = moe.build_layer(h_q, s, cfg, rng)
        else:
            ffn = _dense_mlp(h_q, s, cfg, rng)
        x = x + _ffn_float(h_q * s, ffn, cfg, 0)
        peak = max(peak, float(np.abs(x).max()))
        drafts.append((ln1, attn, ln2, ffn))
    norm, _, _ = _calibrated_ln(x, cfg, rng)

    res_scale = RESIDUAL_HEADROOM * peak / fixed.smax(ln_cfg.residual_bits)

    def ln(params: tuple) -> LayerNorm:
        return layernorm.make(*params[:2], res_scale, params[2], cfg)

    def add(out_scale: float) -> Requant:
        return Requant.choose(out_scale / res_scale, cfg)

    blocks = tuple(Block(ln(ln1), attn, add(attn.out_scale), ln(ln2), ffn, add(ffn.out_scale))
                   for ln1, attn, ln2, ffn in drafts)
    x_q = quantise_tensor(x0, res_scale, ln_cfg.residual_bits)
    return x_q, ModelWeights(blocks, ln(norm), res_scale)


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------
def accuracy(cfg: DesignConfig, seed: int = 0, task: int = 0) -> dict[str, float]:
    """End-to-end error of the bit-exact model vs :func:`reference` at the last layer, in the
    reference design's terms: ``model_mse`` and ``model_mae`` of the dequantised output (after
    the final LayerNorm, so values are O(1); Edge-MoE reports MSE 0.0015, MAE 0.021 for its C
    simulation vs float), ``model_rms_err_lsb`` / ``model_max_err_lsb`` in output LSBs, and
    ``model_residual_rel_err`` the RMS error of the last residual relative to its RMS, and
    ``model_routing_mismatch`` the fraction of (MoE block, token) whose expert set differs from
    the float router's (each such token's FFN output differs by a whole expert)."""
    x_q, weights = random_model(cfg, seed)
    got = model(x_q, weights, cfg, task)
    ref = reference(x_q, weights, cfg, task)
    err = got.out_q * weights.norm.out_scale - ref.out
    res_err = got.residual_q * weights.res_scale - ref.residual
    mismatch = [np.any(np.sort(r.routing.ids, -1) != np.sort(f, -1), -1)
                for r, f in zip(got.routing, ref.expert_ids)]
    return {
        "model_mse": float(np.mean(err ** 2)),
        "model_mae": float(np.mean(np.abs(err))),
        "model_rms_err_lsb": float(np.sqrt(np.mean(err ** 2)) / weights.norm.out_scale),
        "model_max_err_lsb": float(np.max(np.abs(err)) / weights.norm.out_scale),
        "model_residual_rel_err": float(np.sqrt(np.mean(res_err ** 2)
                                                / np.mean(ref.residual ** 2))),
        "model_routing_mismatch": float(np.mean(mismatch)) if mismatch else 0.0,
    }
