"""Seeded routing generators: for one MoE layer, every token's experts and gate weights.

Every generator draws router logits ``(tokens, experts + null_experts)`` and routes them the way
the config's router does (``model.gating``): ``softmax_topk`` takes the top-k of the softmax
probabilities over all outputs (gates not renormalised); ``topk_softmax`` takes the top-k logits
and softmaxes over those k. Ties go to the lower index. A chosen null expert becomes ``-1``.

* ``uniform``: i.i.d. Gumbel logits: every expert equally likely, k distinct per token.
* ``zipf``: expert popularity ``p ~ rank^-s`` (ranks shuffled per layer); logits ``log p`` plus
  Gumbel noise, so each token samples k distinct experts in proportion to ``p`` (Gumbel top-k).
* ``task``: task-level gating: like ``zipf`` but the ranking is drawn per task, so the tokens of
  one task favour that task's experts and another task favours others.
* ``topk``: token top-k of a random router: standard-normal logits.

Options for all: ``sticky`` (probability that a token repeats the previous token's logits, and so
its experts), ``null_bias`` (added to null experts' logits). Same spec, seed, inference and layer
give the same routing.
"""

from __future__ import annotations

import numpy as np

from moeaccel.config import DesignConfig

from .spec import WorkloadSpec


def route(cfg: DesignConfig, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the config's gating to ``(tokens, router_outputs)`` logits: ``(experts, gates)``,
    each ``(tokens, top_k)``, experts ``-1`` where a null expert was chosen."""
    m = cfg.model
    order = np.argsort(-logits, axis=1, kind="stable")[:, :m.top_k]
    chosen = np.take_along_axis(logits, order, axis=1)
    if m.gating == "softmax_topk":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        gates = np.take_along_axis(shifted, order, axis=1) / shifted.sum(axis=1, keepdims=True)
    else:
        e = np.exp(chosen - chosen[:, :1])
        gates = e / e.sum(axis=1, keepdims=True)
    experts = np.where(order < m.experts, order, -1)
    return experts.astype(np.int32), gates.astype(np.float32)


def _zipf_log_popularity(cfg: DesignConfig, s: float, rng: np.random.Generator) -> np.ndarray:
    ranks = rng.permutation(cfg.model.router_outputs) + 1
    return -s * np.log(ranks)


def logits(cfg: DesignConfig, spec: WorkloadSpec, inference: int, layer: int) -> np.ndarray:
    """Router logits of one layer of one inference under ``spec``."""
    m = cfg.model
    tokens, outputs = m.tokens, m.router_outputs
    task = (spec.task + inference) % m.tasks
    rng = np.random.default_rng([spec.seed, inference, layer])
    if spec.routing == "topk":
        z = rng.standard_normal((tokens, outputs))
    else:
        z = rng.gumbel(size=(tokens, outputs))
        if spec.routing == "zipf":
            z += _zipf_log_popularity(cfg, spec.s, np.random.default_rng([spec.seed, layer, 1]))
        elif spec.routing == "task":
            z += _zipf_log_popularity(cfg, spec.s, np.random.default_rng([spec.seed, layer, 2, task]))
    if m.null_experts:
        z[:, m.experts:] += spec.null_bias
    if spec.sticky > 0:
        repeat = rng.random(tokens) < spec.sticky
        repeat[0] = False
        source = np.maximum.accumulate(np.where(repeat, 0, np.arange(tokens)))
        z = z[source]
    return z


def generate(cfg: DesignConfig, spec: WorkloadSpec, inference: int,
             layer: int) -> tuple[np.ndarray, np.ndarray]:
    """``(experts, gates)`` of one layer of one inference."""
    return route(cfg, logits(cfg, spec, inference, layer))
