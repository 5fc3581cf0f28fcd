"""Timing of the MoE engine's queue store (``hw/queue_store.py``): the router's read-out kept on
chip and replayed as token ids (gather) and routes (scatter).

A replay command's first entry is valid ``READ_STAGES`` cycle after the command handshake (one
synchronous memory read), then one entry per cycle. The gather front end would take its first
token id one cycle earlier (:data:`sim.timing.gather.CMD_CYCLES`), so every GEMM the engine
feeds through the queue store (router GEMM, both expert GEMMs) takes
:func:`gathered_gemm_cycles` = the gather's closed form plus ``READ_STAGES``.
"""

from __future__ import annotations

from moeaccel.config import DesignConfig
from sim.timing import gather

#: cycles from a replay command's handshake to its first entry on the output (one memory read)
READ_STAGES = 1


def latency(cfg: DesignConfig) -> int:
    """Cycles from a replay command's handshake to its first entry being valid."""
    return READ_STAGES


def cycles(cfg: DesignConfig, entries: int) -> int:
    """A replay of ``entries`` entries, command handshake (cycle 0) through the last entry's
    handshake inclusive, output always ready."""
    return READ_STAGES + entries


def gathered_gemm_cycles(cfg: DesignConfig, m: int, k: int, n: int) -> int:
    """An ``m x k x n`` GEMM whose ``m`` token ids come from the queue store through the gather
    front end: command handshake (cycle 0) through the unit's last output handshake inclusive
    (``tests/hw/test_moe_engine.py`` asserts the engine's ``ffn_cycles`` against this)."""
    return gather.gathered_gemm_cycles(cfg, m, k, n) + READ_STAGES
