"""Crafted MoE layers: a :func:`golden.moe.random_layer` whose gate is reshaped so the router
produces a chosen routing (uniform, Zipf-skewed, one expert taking all, empty experts, extreme
inputs). Pure NumPy: the engine's tests, its measurement bench and ``moeaccel validate`` (which
computes golden's routing of the same layer for the simulator) all build layers here."""

from __future__ import annotations

import dataclasses

import numpy as np

from golden import moe
from golden.fixed import smax, smin
from moeaccel.config import DesignConfig

#: every routing :func:`crafted` makes
ROUTINGS = ("uniform", "zipf", "one_expert", "empty", "extreme")


def crafted(cfg: DesignConfig, routing: str, seed: int, task: int
            ) -> tuple[np.ndarray, moe.MoeLayer]:
    """``(x_q, layer)`` of :func:`golden.moe.random_layer` with the gate of ``task`` reshaped:

    * ``uniform``: as drawn;
    * ``zipf``: input feature 0 set to the maximum for every token and gate row 0 a Zipf-decaying
      bias ``127 / (r+1)`` over the router outputs, so low outputs take most tokens;
    * ``one_expert``: the same bias +max for output 1 and -max elsewhere, the rest of the gate
      scaled down: output 1 takes every token;
    * ``empty``: +max for outputs 0 and ``R-1`` (top-2), -max for the others: those are empty;
    * ``extreme``: every input -128 or +127 (saturating logits, GELU inputs and outputs).
    """
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; one of {', '.join(ROUTINGS)}")
    x_q, layer = moe.random_layer(cfg, seed)
    if routing == "uniform":
        return x_q, layer
    bits, r = cfg.hardware.compute_unit.operand_bits, cfg.model.router_outputs
    hi, lo = smax(bits), smin(bits)
    if routing == "extreme":
        return np.where(np.random.default_rng(seed).random(x_q.shape) < 0.5, lo, hi), layer
    x_q = x_q.copy()
    x_q[:, 0] = hi
    gate = layer.gate_q.copy()
    if routing == "zipf":
        gate[task, 0] = [round(hi / (e + 1)) for e in range(r)]
    else:
        gate[task, 1:] //= 16
        hot = [1] if routing == "one_expert" else [0, r - 1]
        gate[task, 0] = [hi if e in hot else lo for e in range(r)]
    return x_q, dataclasses.replace(layer, gate_q=gate)
