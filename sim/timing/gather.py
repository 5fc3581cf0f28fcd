"""Timing of the gather front end (``hw/gather.py``): token ids in, the array's ``act`` out.

Cycle convention (as :mod:`sim.timing.compute_unit`): the command handshake is cycle 0; token
ids are offered every cycle and ``act`` is always ready. Token ids are taken one per cycle from
cycle ``CMD_CYCLES`` into the row-base multiplier, a pipeline of ``MULTIPLY_STAGES`` that advances
in lockstep; an id's row base leaves it into one of two banks of ``rows`` row bases (a tile's ids
into one bank), the bank streamable the cycle after its tile's last row base was written. A bank
is written again from the cycle after its last beat was issued: until then the pipeline holds
(and takes no id). Each act beat is issued to the memory read and is valid ``READ_STAGES +
SELECT_STAGES + OUTPUT_STAGES`` cycles later (the read, the read word's register, the lane's
element pre-selected within its group of lanes, the output FIFO). Fed by the
gather, the compute unit steps ``compute_unit.ACT_STAGES`` cycles after an act beat is first
valid (its act register slice).
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig
from sim.timing import compute_unit

#: cycles spent accepting the command before the first token id
CMD_CYCLES = 1
#: register stages of the row-base multiplier ``id * k`` (:data:`hw.multiplier.STAGES`)
MULTIPLY_STAGES = 2
#: stages between a beat's issue and its ``act`` beat being valid: the synchronous memory read
#: and the read word's register
READ_STAGES = 2
#: stages picking the lane's element from the read word before the output FIFO: the element
#: within each group of lanes, registered (next to the group's block RAMs), then the group
SELECT_STAGES = 1
#: stages between the lane select and ``act``: the output FIFO (``hw.credit_buffer``)
OUTPUT_STAGES = 1
#: stages of a beat from its issue to its output FIFO write: the beats in flight a credit covers
ISSUE_STAGES = READ_STAGES + SELECT_STAGES


def tile_rows(cfg: DesignConfig, m: int) -> list[int]:
    """Token ids (queue entries) per token tile of an ``m``-entry queue."""
    rows = cfg.hardware.compute_unit.rows
    return [min(rows, m - i) for i in range(0, m, rows)]


def issue_cycles(cfg: DesignConfig, m: int, k: int, n: int) -> list[tuple[int, int]]:
    """``(first, last)`` issue cycle of each token tile's act beats, with no stalls.

    Row bases are written one per cycle from cycle ``CMD_CYCLES + MULTIPLY_STAGES`` (the first
    id's product); a write waiting for its bank holds the pipeline with the next ids in it, so
    once the bank is released the writes go on one per cycle."""
    steps = k * math.ceil(n / cfg.hardware.compute_unit.cols)
    written: list[int] = []     # each tile's last row base write
    spans: list[tuple[int, int]] = []
    for t, r in enumerate(tile_rows(cfg, m)):
        start = CMD_CYCLES + MULTIPLY_STAGES if t == 0 else written[-1] + 1
        if t >= 2:
            start = max(start, spans[t - 2][1] + 1)     # wait for the bank to be released
        written.append(start + r - 1)
        first = written[-1] + 1 if t == 0 else max(written[-1] + 1, spans[-1][1] + 1)
        spans.append((first, first + steps - 1))
    return spans


def latency(cfg: DesignConfig, m: int = 1) -> int:
    """Cycles from the command handshake to the first ``act`` beat being valid."""
    return (CMD_CYCLES + min(cfg.hardware.compute_unit.rows, m) + MULTIPLY_STAGES + ISSUE_STAGES
            + OUTPUT_STAGES)


def cycles(cfg: DesignConfig, m: int, k: int, n: int) -> int:
    """Cycles of one gather with no stalls, from the command handshake (cycle 0) through the
    last ``act`` handshake inclusive."""
    return issue_cycles(cfg, m, k, n)[-1][1] + ISSUE_STAGES + OUTPUT_STAGES + 1


def gathered_gemm_cycles(cfg: DesignConfig, m: int, k: int, n: int) -> int:
    """Cycles of a compute-unit GEMM fed by the gather front end (both commands in cycle 0), up
    to the unit's last output handshake. The gather delays the first array step by
    ``latency + compute_unit.ACT_STAGES - CMD_CYCLES`` cycles; after that it stays ahead of the array when
    ``k * ceil(n/cols) >= rows`` (a token tile's ids arrive while the previous tile streams),
    which is required here (``ValueError`` otherwise)."""
    cu = cfg.hardware.compute_unit
    if m > cu.rows and k * math.ceil(n / cu.cols) < cu.rows:
        raise ValueError(f"k * ceil(n/cols) = {k * math.ceil(n / cu.cols)} < rows = {cu.rows}: "
                         "the gather cannot keep up; no closed form")
    return (compute_unit.gemm_cycles(cfg, m, k, n) + latency(cfg, m) + compute_unit.ACT_STAGES
            - compute_unit.CMD_CYCLES)
