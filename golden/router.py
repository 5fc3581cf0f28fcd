"""The router (expert gating), bit-exact: router logits -> top-k experts and gates -> per-expert
token queues with a capacity limit.

Inputs are the router logits of one layer, ``(tokens, R)`` signed integers in the softmax input
format (``hardware.softmax.input_bits`` / ``input_frac_bits``), ``R = experts + null_experts``:
routed experts are outputs ``0 .. experts-1``, null experts ``experts .. R-1``. (The logits are
``x . W_gate`` computed by the compute unit and requantised to that format; see ``golden.moe``.)

Gating styles (``model.gating``):

* ``softmax_topk`` (M3ViT): softmax over all ``R`` logits, then the top-k of the probabilities,
  not renormalised.
* ``topk_softmax`` (Mixtral): the top-k of the logits, then a softmax over the ``k`` chosen.

Top-k orders slots best first; equal values go to the LOWER output index. Gates are unsigned
probabilities with ``hardware.softmax.prob_frac_bits`` fraction bits (the softmax output format).

Queues are filled in token order, and within a token in slot order: a slot choosing a null
expert does no computation (counted in ``null_slots``); a slot choosing an expert whose queue
already holds ``model.expert_capacity`` tokens is dropped (counted per expert). Shared experts
are not routed: every token uses them with gate 1.0 (``golden.moe`` applies them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from golden import fixed
from golden.fixed import IntArray
from golden.softmax import softmax, softmax_float
from moeaccel.config import DesignConfig

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ExpertQueue:
    """One routed expert's queue: its tokens in token order and their gates."""

    expert: int
    tokens: IntArray
    gates: IntArray

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Routing:
    """The router's decisions for one layer.

    ``ids``/``gates``/``kept`` are ``(tokens, top_k)``: the router output chosen in each slot
    (best first), its gate, and whether the slot was queued (False for a null expert or a
    dropped slot). ``queues[e]`` is expert ``e``'s queue; ``dropped[e]`` counts the slots turned
    away by its capacity limit.
    """

    ids: IntArray
    gates: IntArray
    kept: npt.NDArray[np.bool_]
    queues: tuple[ExpertQueue, ...]
    dropped: IntArray
    null_slots: int

    @property
    def counts(self) -> IntArray:
        """Tokens queued per routed expert."""
        return np.array([len(q) for q in self.queues], dtype=np.int64)

    @property
    def active(self) -> tuple[int, ...]:
        """The non-empty experts, in expert order (the order the MoE layer processes them)."""
        return tuple(q.expert for q in self.queues if len(q))

    @property
    def dropped_total(self) -> int:
        return int(self.dropped.sum())


def topk(values: npt.ArrayLike, k: int) -> IntArray:
    """Indices of the ``k`` largest values along the last axis, largest first; equal values are
    ordered by lower index first."""
    v = np.asarray(values)
    order = np.argsort(-v, axis=-1, kind="stable")
    return order[..., :k].astype(np.int64)


def select(logits_q: npt.ArrayLike, cfg: DesignConfig) -> tuple[IntArray, IntArray]:
    """Per token: the top-k router outputs (best first) and their gates, for ``model.gating``."""
    logits = fixed.as_int(logits_q)
    m, sm = cfg.model, cfg.hardware.softmax
    if logits.ndim != 2 or logits.shape[1] != m.router_outputs:
        raise ValueError(f"router logits must be (tokens, {m.router_outputs}), got {logits.shape}")
    if m.gating == "softmax_topk":
        probs = fixed.as_int(softmax(logits, sm).probs_q)
        ids = topk(probs, m.top_k)
        return ids, np.take_along_axis(probs, ids, axis=-1)
    ids = topk(logits, m.top_k)
    chosen = np.take_along_axis(logits, ids, axis=-1)
    return ids, fixed.as_int(softmax(chosen, sm).probs_q)


def build_queues(ids: IntArray, gates: npt.NDArray, cfg: DesignConfig) -> Routing:
    """Fill the per-expert queues from the chosen slots, in token order then slot order (gates
    keep their dtype, so the float reference reuses this)."""
    m = cfg.model
    capacity = m.expert_capacity
    tokens: list[list[int]] = [[] for _ in range(m.experts)]
    queued_gates: list[list] = [[] for _ in range(m.experts)]
    dropped = np.zeros(m.experts, dtype=np.int64)
    kept = np.zeros(ids.shape, dtype=bool)
    null_slots = 0
    for t in range(ids.shape[0]):
        for s in range(ids.shape[1]):
            e = int(ids[t, s])
            if e >= m.experts:
                null_slots += 1
            elif len(tokens[e]) >= capacity:
                dropped[e] += 1
            else:
                tokens[e].append(t)
                queued_gates[e].append(gates[t, s])
                kept[t, s] = True
    queues = tuple(ExpertQueue(e, np.array(tokens[e], dtype=np.int64),
                               np.array(queued_gates[e], dtype=gates.dtype))
                   for e in range(m.experts))
    return Routing(ids=ids, gates=gates, kept=kept, queues=queues, dropped=dropped,
                   null_slots=null_slots)


def route(logits_q: npt.ArrayLike, cfg: DesignConfig) -> Routing:
    """The router, bit-exact: quantised logits ``(tokens, R)`` -> :class:`Routing`."""
    ids, gates = select(logits_q, cfg)
    return build_queues(ids, gates, cfg)


def quantise_logits(logits: npt.ArrayLike, cfg: DesignConfig) -> IntArray:
    """Float logits to the softmax input format (round half up, saturate)."""
    sm = cfg.hardware.softmax
    return fixed.quantise(logits, sm.input_frac_bits, sm.input_bits)


def route_from_float(logits: npt.ArrayLike, cfg: DesignConfig) -> Routing:
    """Float wrapper: quantise float logits to the input format, then :func:`route`."""
    return route(quantise_logits(logits, cfg), cfg)


# --------------------------------------------------------------------------------------------
# Float64 reference
# --------------------------------------------------------------------------------------------
def select_float(logits: npt.ArrayLike, cfg: DesignConfig) -> tuple[IntArray, FloatArray]:
    """Float64 reference of :func:`select`: exact softmax, same top-k order and tie rule."""
    x = np.asarray(logits, dtype=np.float64)
    k = cfg.model.top_k
    if cfg.model.gating == "softmax_topk":
        probs = softmax_float(x)
        ids = topk(probs, k)
        return ids, np.take_along_axis(probs, ids, axis=-1)
    ids = topk(x, k)
    return ids, softmax_float(np.take_along_axis(x, ids, axis=-1))


def near_ties(logits: npt.ArrayLike, cfg: DesignConfig) -> npt.NDArray[np.bool_]:
    """Tokens whose k-th and (k+1)-th best float logits are closer than the quantised datapath
    can resolve: 2 LSBs of the logit format, or (for ``softmax_topk``) 32 LSBs of the gate
    format (1e-3) between their probabilities (twice the softmax error bound, 5e-4)."""
    x = np.asarray(logits, dtype=np.float64)
    m, sm = cfg.model, cfg.hardware.softmax
    if m.top_k >= m.router_outputs:
        return np.zeros(x.shape[0], dtype=bool)
    top = -np.sort(-x, axis=-1)[:, m.top_k - 1:m.top_k + 1]
    tie = (top[:, 0] - top[:, 1]) < 2.0 / (1 << sm.input_frac_bits)
    if m.gating == "softmax_topk":
        p = -np.sort(-softmax_float(x), axis=-1)[:, m.top_k - 1:m.top_k + 1]
        tie |= (p[:, 0] - p[:, 1]) < 32.0 / (1 << sm.prob_frac_bits)
    return tie


def random_logits(cfg: DesignConfig, tokens: int, rng: np.random.Generator) -> FloatArray:
    """Float router logits like a trained gate's: standard normal scaled to spread ~2 units."""
    return rng.normal(0.0, 1.5, size=(tokens, cfg.model.router_outputs))


def accuracy(cfg: DesignConfig, seed: int = 0, tokens: int = 4096) -> dict[str, float]:
    """Quantised router vs the float64 reference on random float logits.

    ``router_topk_agreement``: fraction of tokens without near-ties whose chosen set of router
    outputs equals the float reference's (target 1.0). ``router_gate_max_abs_err``: worst gate
    error (in probability units) over those tokens. ``router_near_tie_fraction``: tokens excluded.
    """
    rng = np.random.default_rng(seed)
    x = random_logits(cfg, tokens, rng)
    ids_q, gates_q = select(quantise_logits(x, cfg), cfg)
    ids_f, gates_f = select_float(x, cfg)
    clear = ~near_ties(x, cfg)
    same = np.all(np.sort(ids_q, axis=-1) == np.sort(ids_f, axis=-1), axis=-1)
    ok = clear & np.all(ids_q == ids_f, axis=-1)
    gate_err = np.abs(fixed.dequantise(gates_q, cfg.hardware.softmax.prob_frac_bits) - gates_f)
    return {
        "router_topk_agreement": float(same[clear].mean()) if clear.any() else 1.0,
        "router_gate_max_abs_err": float(gate_err[ok].max()) if ok.any() else 0.0,
        "router_near_tie_fraction": float(1.0 - clear.mean()),
    }
