"""One MoE layer, bit-exact, scheduled expert by expert as the hardware runs it.

Dataflow and number formats (``cu = hardware.compute_unit``, all GEMMs on the compute unit)::

    x_q [T, D]        signed operand_bits activations (scale x_scale)
    logits            golden.linear.linear(x_q, W_gate[task], 0) requantised to the softmax
                      input format -> golden.router.route -> per-expert queues
    per expert:
      h   = linear(gather(x_q, tokens), W1, b1) requantised to the GELU input format
      g   = golden.gelu.gelu(h)                              (GELU output format)
      a_q = requantise(g) to operand_bits                    (the activation requantiser)
      y_q = linear(a_q, W2, b2) requantised to operand_bits  (scale out_scale, shared by all)
      out_acc[token] += gate * y_q                           (scatter-accumulate, exact)
    out_q = scatter_finalise(out_acc)                        signed operand_bits, out_scale

Schedule: shared experts first (every token, gate 1.0, in order), then every non-empty routed
expert in expert order (``MoeResult.order``); the hardware and the simulator follow it.

:func:`random_layer` builds seeded int weights and requant parameters chosen from float scales
(calibrated on a float run of the same layer; :func:`build_layer` does it for a given input, as
``golden.model`` needs, and :func:`calibrate_experts` / :func:`make_experts` for any FFN); :func:`reference` is the float64 layer on the
same quantised inputs and weights; :func:`accuracy` compares the two in output LSBs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from golden import fixed, router
from golden.fixed import IntArray
from golden.gelu import gelu, gelu_float
from golden.linear import (Requant, gather, linear, linear_acc, quantise_tensor, scatter_accumulate,
                           scatter_finalise, symmetric_scale)
from moeaccel.config import DesignConfig

FloatArray = npt.NDArray[np.float64]

#: accuracy target of the whole layer: RMS error vs float64, in output LSBs
TARGET_RMS_LSB = 1.0


@dataclass(frozen=True)
class Expert:
    """One expert FFN (``D -> H -> D``): int weights, biases in accumulator units, the float
    weight scales and its three requantisers (to GELU input, GELU output to operands, output)."""

    w1_q: IntArray
    b1_q: IntArray
    w2_q: IntArray
    b2_q: IntArray
    w1_scale: float
    w2_scale: float
    hidden: Requant
    act: Requant
    out: Requant


@dataclass(frozen=True)
class MoeLayer:
    """Weights and formats of one MoE layer: a gate matrix per task ``[tasks, D, R]``, routed and
    shared experts, the input/activation/output scales."""

    gate_q: IntArray
    gate_scale: float
    logits: Requant
    experts: tuple[Expert, ...]
    shared: tuple[Expert, ...]
    x_scale: float
    act_scale: float
    out_scale: float


@dataclass(frozen=True)
class MoeResult:
    """The layer's output and what the schedule did. ``order`` lists the experts processed as
    ``("shared", i)`` and ``("routed", e)`` in processing order."""

    out_q: IntArray
    logits_q: IntArray
    routing: router.Routing
    order: tuple[tuple[str, int], ...]

    @property
    def counts(self) -> IntArray:
        return self.routing.counts

    @property
    def dropped(self) -> int:
        return self.routing.dropped_total


# --------------------------------------------------------------------------------------------
# Bit-exact layer
# --------------------------------------------------------------------------------------------
def router_logits(x_q: npt.ArrayLike, layer: MoeLayer, cfg: DesignConfig, task: int = 0) -> IntArray:
    """``x . W_gate[task]`` (no bias) on the compute unit, requantised to the softmax input."""
    if not 0 <= task < layer.gate_q.shape[0]:
        raise ValueError(f"task {task} outside 0..{layer.gate_q.shape[0] - 1}")
    cu, sm = cfg.hardware.compute_unit, cfg.hardware.softmax
    zero = np.zeros(layer.gate_q.shape[2], dtype=np.int64)
    return linear(x_q, layer.gate_q[task], zero, layer.logits.multiplier, layer.logits.shift, cu,
                  sm.input_bits)


def expert_ffn(x_rows: IntArray, expert: Expert, cfg: DesignConfig) -> IntArray:
    """The expert FFN on gathered rows: linear -> GELU -> activation requant -> linear."""
    hw = cfg.hardware
    cu = hw.compute_unit
    h = linear(x_rows, expert.w1_q, expert.b1_q, expert.hidden.multiplier, expert.hidden.shift,
               cu, hw.gelu.input_bits)
    g = gelu(h, hw.gelu)
    a = fixed.requantise(g, expert.act.multiplier, expert.act.shift, cu.operand_bits, cu.rounding)
    return linear(a, expert.w2_q, expert.b2_q, expert.out.multiplier, expert.out.shift, cu)


def moe_layer(x_q: npt.ArrayLike, layer: MoeLayer, cfg: DesignConfig, task: int = 0) -> MoeResult:
    """The layer, bit-exact, expert by expert (see the module docstring)."""
    x_q = fixed.as_int(x_q)
    tokens = x_q.shape[0]
    logits_q = router_logits(x_q, layer, cfg, task)
    routing = router.route(logits_q, cfg)
    acc = np.zeros((tokens, cfg.model.embed_dim), dtype=np.int64)
    order: list[tuple[str, int]] = []
    one = 1 << cfg.hardware.softmax.prob_frac_bits
    all_tokens = np.arange(tokens, dtype=np.int64)
    for i, expert in enumerate(layer.shared):
        y = expert_ffn(x_q, expert, cfg)
        acc = scatter_accumulate(acc, all_tokens, np.full(tokens, one), y, cfg)
        order.append(("shared", i))
    for e in routing.active:
        q = routing.queues[e]
        y = expert_ffn(gather(x_q, q.tokens), layer.experts[e], cfg)
        acc = scatter_accumulate(acc, q.tokens, q.gates, y, cfg)
        order.append(("routed", e))
    return MoeResult(scatter_finalise(acc, cfg), logits_q, routing, tuple(order))


# --------------------------------------------------------------------------------------------
# Float64 reference on the same quantised inputs and weights
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FloatExpert:
    w1: FloatArray
    b1: FloatArray
    w2: FloatArray
    b2: FloatArray

    def __call__(self, x: FloatArray) -> FloatArray:
        return gelu_float(x @ self.w1 + self.b1) @ self.w2 + self.b2


def float_expert(e: Expert, x_scale: float, act_scale: float) -> FloatExpert:
    """The float64 expert on ``e``'s dequantised weights (input scale ``x_scale``, activation
    scale ``act_scale``)."""
    return FloatExpert(e.w1_q * e.w1_scale, e.b1_q * (x_scale * e.w1_scale),
                       e.w2_q * e.w2_scale, e.b2_q * (act_scale * e.w2_scale))


def reference(x_q: npt.ArrayLike, layer: MoeLayer, cfg: DesignConfig, task: int = 0) -> FloatArray:
    """Float64 layer output (real units) on the dequantised ``x_q`` and weights: exact logits,
    softmax and GELU, no intermediate rounding; routing by :func:`golden.router.select_float`
    with the same capacity rule."""
    return reference_float(fixed.as_int(x_q) * layer.x_scale, layer, cfg, task)


def reference_float(x: FloatArray, layer: MoeLayer, cfg: DesignConfig, task: int = 0) -> FloatArray:
    """:func:`reference` on a real-valued input ``x [T, D]`` (no input quantisation)."""
    logits = x @ (layer.gate_q[task] * layer.gate_scale)
    ids, gates = router.select_float(logits, cfg)
    routing = router.build_queues(ids, gates, cfg)
    out = np.zeros((x.shape[0], cfg.model.embed_dim))
    for e in layer.shared:
        out += float_expert(e, layer.x_scale, layer.act_scale)(x)
    for e in routing.active:
        q = routing.queues[e]
        y = float_expert(layer.experts[e], layer.x_scale, layer.act_scale)(x[q.tokens])
        out[q.tokens] += q.gates[:, None] * y
    return out


# --------------------------------------------------------------------------------------------
# Seeded random layer
# --------------------------------------------------------------------------------------------
def random_input(cfg: DesignConfig, rng: np.random.Generator) -> FloatArray:
    """Float activations like a LayerNorm output: standard normal ``[tokens, embed_dim]``."""
    return rng.standard_normal((cfg.model.tokens, cfg.model.embed_dim))


def random_layer(cfg: DesignConfig, seed: int = 0) -> tuple[IntArray, MoeLayer]:
    """A seeded random layer and input: ``(x_q, layer)`` (input: :func:`random_input` quantised
    to its peak; layer: :func:`build_layer`)."""
    bits = cfg.hardware.compute_unit.operand_bits
    rng = np.random.default_rng(seed)
    x = random_input(cfg, rng)
    x_scale = symmetric_scale(x, bits)
    x_q = quantise_tensor(x, x_scale, bits)
    return x_q, build_layer(x_q, x_scale, cfg, rng)


def random_ffn_weights(d: int, h: int, rng: np.random.Generator) -> tuple[FloatArray, ...]:
    """Float ``(W1 [d, h], b1, W2 [h, d], b2)`` of one FFN: normal, fan-in scaled; small biases."""
    return (rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, h)), 0.1 * rng.standard_normal(h),
            rng.normal(0.0, 1.0 / np.sqrt(h), size=(h, d)), 0.1 * rng.standard_normal(d))


def calibrate_experts(raw: list[tuple[FloatArray, ...]], x_q: IntArray, x_scale: float,
                      cfg: DesignConfig) -> tuple[list[tuple], float, float]:
    """Quantise float FFN weights ``raw`` (from :func:`random_ffn_weights`) for the input
    ``x_q`` (scale ``x_scale``): weights per tensor to symmetric ``operand_bits``, biases to
    accumulator units. Returns ``(partial, act_scale, out_peak)``: the quantised weights for
    :func:`make_experts`, the activation scale (peak of the GELU outputs over all experts) and
    the peak of the experts' float outputs."""
    bits = cfg.hardware.compute_unit.operand_bits
    xd = fixed.as_int(x_q) * x_scale
    # First pass: quantise W1/b1 and find the activation peak (GELU outputs) over all experts.
    firsts = []
    act_peak = 0.0
    for w1, b1, _, _ in raw:
        s1 = symmetric_scale(w1, bits)
        w1_q = quantise_tensor(w1, s1, bits)
        b1_q = np.floor(b1 / (x_scale * s1) + 0.5).astype(np.int64)
        firsts.append((w1_q, b1_q, s1))
        act_peak = max(act_peak, float(np.abs(gelu_float(xd @ (w1_q * s1) + b1_q * x_scale * s1)).max()))
    act_scale = act_peak / fixed.smax(bits)
    # Second pass: W2/b2, and the output peak over every expert output.
    partial = []
    out_peak = 0.0
    for (w1_q, b1_q, s1), (_, _, w2, b2) in zip(firsts, raw):
        s2 = symmetric_scale(w2, bits)
        w2_q = quantise_tensor(w2, s2, bits)
        b2_q = np.floor(b2 / (act_scale * s2) + 0.5).astype(np.int64)
        fe = FloatExpert(w1_q * s1, b1_q * x_scale * s1, w2_q * s2, b2_q * act_scale * s2)
        out_peak = max(out_peak, float(np.abs(fe(xd)).max()))
        partial.append((w1_q, b1_q, s1, w2_q, b2_q, s2))
    return partial, act_scale, out_peak


def make_experts(partial: list[tuple], x_scale: float, act_scale: float, out_scale: float,
                 cfg: DesignConfig) -> tuple[Expert, ...]:
    """:class:`Expert` objects from :func:`calibrate_experts`' weights, with their requants:
    the GELU input format's LSB for the hidden one, then ``act_scale`` and ``out_scale``."""
    gelu_lsb = 2.0 ** -cfg.hardware.gelu.input_frac_bits
    gelu_out_lsb = 2.0 ** -cfg.hardware.gelu.output_frac_bits
    return tuple(
        Expert(w1_q, b1_q, w2_q, b2_q, s1, s2,
               hidden=Requant.choose(x_scale * s1 / gelu_lsb, cfg),
               act=Requant.choose(gelu_out_lsb / act_scale, cfg),
               out=Requant.choose(act_scale * s2 / out_scale, cfg))
        for (w1_q, b1_q, s1, w2_q, b2_q, s2) in partial)


def build_layer(x_q: IntArray, x_scale: float, cfg: DesignConfig,
                rng: np.random.Generator) -> MoeLayer:
    """Seeded random weights for a layer whose input is ``x_q`` (scale ``x_scale``).

    Float weights (:func:`random_ffn_weights`, gate normal ``1.5/sqrt(D)``) quantised per tensor
    to symmetric ``operand_bits``; biases to accumulator units. Scales: the GELU input format's
    LSB for the hidden requant; the activation and output scales from the peaks of a float run
    of the same quantised layer on ``x_q`` over every task's router (so nothing saturates on
    the calibration input).
    """
    m, hw = cfg.model, cfg.hardware
    bits = hw.compute_unit.operand_bits
    d, h = m.embed_dim, m.expert_hidden

    gate = rng.normal(0.0, 1.5 / np.sqrt(d), size=(m.tasks, d, m.router_outputs))
    gate_scale = symmetric_scale(gate, bits)
    gate_q = quantise_tensor(gate, gate_scale, bits)
    logits = Requant.choose(x_scale * gate_scale * (1 << hw.softmax.input_frac_bits), cfg)

    raw = [random_ffn_weights(d, h, rng) for _ in range(m.experts + m.shared_experts)]
    partial, act_scale, out_peak = calibrate_experts(raw, x_q, x_scale, cfg)
    draft = _assemble(cfg, partial, x_scale, act_scale, out_peak / fixed.smax(bits), gate_q,
                      gate_scale, logits)
    layer_peak = max(float(np.abs(reference(x_q, draft, cfg, task)).max())
                     for task in range(m.tasks))
    out_scale = max(out_peak, layer_peak) / fixed.smax(bits)
    return _assemble(cfg, partial, x_scale, act_scale, out_scale, gate_q, gate_scale, logits)


def _assemble(cfg: DesignConfig, partial, x_scale: float, act_scale: float, out_scale: float,
              gate_q: IntArray, gate_scale: float, logits: Requant) -> MoeLayer:
    experts = make_experts(partial, x_scale, act_scale, out_scale, cfg)
    n = cfg.model.experts
    return MoeLayer(gate_q, gate_scale, logits, experts[:n], experts[n:], x_scale, act_scale,
                    out_scale)


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------
def accuracy(cfg: DesignConfig, seed: int = 0) -> dict[str, float]:
    """The bit-exact layer vs the float64 reference on the same quantised input and weights.

    ``moe_layer_rms_err_lsb`` (target <= 1) and ``moe_layer_max_err_lsb`` in output LSBs;
    ``moe_layer_routing_mismatch`` the fraction of tokens whose expert set differs from the float
    router's (near-ties); ``moe_layer_dropped`` slots dropped by the capacity limit."""
    x_q, layer = random_layer(cfg, seed)
    res = moe_layer(x_q, layer, cfg)
    ref = reference(x_q, layer, cfg) / layer.out_scale
    err = res.out_q - ref
    ids_f, _ = router.select_float(fixed.as_int(x_q) * layer.x_scale
                                   @ (layer.gate_q[0] * layer.gate_scale), cfg)
    mismatch = np.any(np.sort(ids_f, axis=-1) != np.sort(res.routing.ids, axis=-1), axis=-1)
    return {
        "moe_layer_rms_err_lsb": float(np.sqrt(np.mean(err ** 2))),
        "moe_layer_max_err_lsb": float(np.max(np.abs(err))),
        "moe_layer_routing_mismatch": float(mismatch.mean()),
        "moe_layer_dropped": float(res.dropped),
    }
