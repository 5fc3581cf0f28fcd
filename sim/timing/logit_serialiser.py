"""Timing of the MoE engine's logit serialiser (``hw/logit_serialiser.py``): router GEMM rows
(one row of ``cols`` lanes per token) -> the router's one-logit-per-beat input.

A row is taken when offered and the serialiser is empty, or in the cycle its previous row's last
logit leaves; its ``R = router_outputs`` logits are offered one per cycle from the next cycle,
as fast as the router accepts them. So rows flow at one per ``R`` cycles at most (slower when
the router is) and the compute unit's output waits when its rows come faster (one row later
than without the serialiser's input skid buffer, which holds one row: the cycles here are those
of the row register). ``idle`` rises
the cycle after the last logit was accepted.
"""

from __future__ import annotations

from collections.abc import Callable

from moeaccel.config import DesignConfig
from sim.timing import compute_unit

#: cycles from a row's handshake to its first logit being offered
LATENCY = 1


def row_cycles(cfg: DesignConfig, m: int, k: int, offset: int = 0) -> list[int]:
    """The cycle each output row of an ``m x k x n`` GEMM with ``n <= cols`` (one output tile per
    token tile) is offered with no back-pressure, ``offset`` cycles after the command handshake
    of :func:`sim.timing.compute_unit.gemm_cycles` (the last is ``gemm_cycles - 1 + offset``)."""
    rows = cfg.hardware.compute_unit.rows
    tile_rows = [min(rows, m - i) for i in range(0, m, rows)]
    out, last_step = [], compute_unit.CMD_CYCLES + k - 1
    for t, r in enumerate(tile_rows):
        if t:
            last_step += compute_unit.tile_period(cfg, k, tile_rows[t - 1])
        first = last_step + compute_unit.latency(cfg) + offset
        out += range(first, first + r * cfg.hardware.compute_unit.row_cycles,
                     cfg.hardware.compute_unit.row_cycles)
    return out


def offer(offered: list[int]) -> Callable[[int, int], int]:
    """The router's feed (:func:`sim.timing.router.fed_schedule`'s ``offer``) from rows offered
    at ``offered``: row ``j`` is taken when offered and the previous row's last logit has been
    accepted (the same cycle allowed), its first logit offered ``LATENCY`` later."""
    return lambda j, previous: max(offered[j], previous) + LATENCY


def idle_cycle(last_accepted: int) -> int:
    """The first cycle the serialiser is idle again, its last logit accepted in
    ``last_accepted``."""
    return last_accepted + 1
