"""Timing of the router block (``hw/router.py``): logits in -> per-expert token queues.

Planned pipeline (refined to the RTL's measured cycles by ``tests/hw/test_router.py``):

* ``softmax_topk``: logits -> softmax over all ``R = experts + null_experts`` -> streaming
  top-k of the probabilities -> queue writes (one (token, gate) entry per cycle).
* ``topk_softmax``: logits -> streaming top-k of the logits -> softmax over the ``k`` chosen ->
  queue writes.

Stages are decoupled by streams, so tokens overlap: the steady-state interval between tokens is
the slowest stage's, and a layer of ``tokens`` tokens takes ``fill + tokens * interval`` cycles.
After the last token the queues are read out (:func:`readout_cycles`), one entry per cycle.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig


def _beats(cfg: DesignConfig, n: int) -> int:
    """Stream beats to carry ``n`` values at ``softmax.lanes`` values per beat."""
    return math.ceil(n / cfg.hardware.softmax.lanes)


def _softmax_interval(cfg: DesignConfig, n: int) -> int:
    """Planned softmax row interval: one pass for max/sum, one pass to normalise."""
    return 2 * _beats(cfg, n)


def _softmax_latency(cfg: DesignConfig, n: int) -> int:
    """Planned softmax latency from first logit in to first probability out."""
    return _beats(cfg, n) + 4


def interval(cfg: DesignConfig) -> int:
    """Steady-state cycles between tokens (the slowest stage)."""
    m = cfg.model
    r, k = m.router_outputs, m.top_k
    if m.gating == "softmax_topk":
        return max(_beats(cfg, r), _softmax_interval(cfg, r), k)
    return max(_beats(cfg, r), _softmax_interval(cfg, k), k)


def latency(cfg: DesignConfig) -> int:
    """Cycles from a token's first logit accepted to its first queue write."""
    m = cfg.model
    r, k = m.router_outputs, m.top_k
    if m.gating == "softmax_topk":
        # softmax, then the top-k scan over all R probabilities, then one register stage
        return _softmax_latency(cfg, r) + _beats(cfg, r) + 1
    # top-k scan over all R logits, then softmax over the k chosen
    return _beats(cfg, r) + 1 + _softmax_latency(cfg, k) + _beats(cfg, k) + 1


def cycles(cfg: DesignConfig, tokens: int) -> int:
    """Cycles from the first logit of a layer accepted to the last queue write, no stalls."""
    if tokens <= 0:
        return 0
    k = cfg.model.top_k
    return latency(cfg) + (tokens - 1) * interval(cfg) + k


def readout_cycles(cfg: DesignConfig, entries: int) -> int:
    """Cycles to stream out ``entries`` queued (token, gate) entries after a flush."""
    return entries + 1
