"""Timing of the shared compute unit (``hw/compute_unit.py``): the quantised linear layer.

The unit is a ``rows x cols`` output-stationary MAC array. One GEMM ``y[m, n] = x[m, k] w[k, n]``
is cut into ``ceil(m/rows) * ceil(n/cols)`` output tiles (token tiles outer, output-feature tiles
inner); each tile takes ``k`` array steps, one step (all ``rows * cols`` MACs for one reduction
index) per cycle when fed. The accumulators are double-buffered: when a tile's last step has been
accumulated its ``rows x cols`` results move to a shadow bank that drains one row of ``cols``
results per cycle through the requantiser while the next tile accumulates.

Pipeline (all registered):

* ``CMD_CYCLES``: the command header is accepted; the first step can be accepted the cycle after;
* ``ACT_STAGES``: the ``act`` register slice (the step join starts at flip-flops); no cycle when
  act beats are offered from the command on, this many after a later first act beat (the gather);
* ``ARRAY_STAGES``: operand registers -> the multipliers' input registers -> their product
  registers (``hw.multiplier.Multiplier``, the DSPs' own registers) -> accumulate -> the shadow
  bank, loaded from the accumulators the cycle after a tile's last step (the last step of a tile
  lands in the shadow bank ``ARRAY_STAGES`` cycles after its handshake);
* drain: one row of the shadow bank every ``row_cycles`` cycles (only the tile's valid rows,
  ``min(rows, m - i*rows)``); a row leaves in ``row_cycles = cols / output_lanes`` beats of
  ``output_lanes`` lanes (1 beat when ``output_lanes`` is 0), and is whole again after the last
  stage, ``row_cycles - 1`` cycles after its first beat;
* ``REQUANT_STAGES``: the hard multipliers' operand registers -> partial products with the
  requant multiplier (the multipliers' output registers) -> their sum plus the rounding
  constant -> arithmetic shift -> saturation into the output register;
* ``ACTIVATION_STAGES``: the fused activation (GELU's pipeline, then the activation
  requantiser, whose last register is the output FIFO of :class:`hw.credit_buffer.CreditBuffer`),
  taken by every row whether the command asks for GELU or not;
* ``OUTPUT_STAGES``: a register slice after the FIFO (:class:`hw.register_slice.RegisterSlice`), so
  the consumers' logic starts at flip-flops, not at the FIFO's asynchronously read LUT RAM.

These stages never stall: a shadow-bank row drains only while the output FIFO has a credit for it
(registered), and the FIFO is deep enough (``hw.credit_buffer.full_rate_depth``) that with the
output always ready no row waits, so the cycle counts below are those of the unstalled pipeline.
Under back-pressure the drain sees a full FIFO one cycle late, through the registered credit.

A tile's last step is accepted only when the shadow bank is free, i.e. the previous tile's rows
have all been drained. So in steady state a tile takes ``max(k, R_prev * row_cycles +
ARRAY_STAGES)`` cycles where ``R_prev`` is the number of rows the previous tile drains: for
``k >= rows * row_cycles + ARRAY_STAGES`` the array completes one step per cycle and drain is
completely hidden.

Cycle convention (asserted against the RTL by ``tests/hw/test_compute_unit.py``): the command
handshake is cycle 0; with every input always valid and the output always ready, the last output
handshake happens in cycle ``gemm_cycles(...) - 1``.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig
from sim.timing import gelu

#: cycles spent accepting the command header before the first array step
CMD_CYCLES = 1
#: register stages of the ``act`` input (a register slice, so the step join starts at
#: flip-flops): no cycle when act beats are offered from the command on, this many cycles
#: after an act beat that is first valid later (e.g. from the gather)
ACT_STAGES = 1
#: register stages from an array step's handshake until its result is in the shadow bank
ARRAY_STAGES = 5
#: register stages from a shadow-bank row leaving to its output beat being valid
REQUANT_STAGES = 5
#: register stages of the fused activation: GELU, then a second requantiser
ACTIVATION_STAGES = gelu.PIPELINE_STAGES + REQUANT_STAGES
#: register stages between the output FIFO and ``out``
OUTPUT_STAGES = 1


def _check(m: int, k: int, n: int) -> None:
    for name, v in (("m", m), ("k", k), ("n", n)):
        if v < 1:
            raise ValueError(f"GEMM dimension {name} must be >= 1, got {v}")


def tiles(cfg: DesignConfig, m: int, n: int) -> int:
    """Output tiles of one GEMM: ``ceil(m/rows) * ceil(n/cols)``."""
    cu = cfg.hardware.compute_unit
    return math.ceil(m / cu.rows) * math.ceil(n / cu.cols)


def latency(cfg: DesignConfig) -> int:
    """Cycles from the handshake of a tile's last array step to its first output beat being valid
    (shadow bank, first drained row's beats, requantiser, fused activation, output register).
    For ``k = 1`` this is also the latency from the first input to the first output."""
    row_cycles = cfg.hardware.compute_unit.row_cycles
    return ARRAY_STAGES + REQUANT_STAGES + ACTIVATION_STAGES + OUTPUT_STAGES + row_cycles - 1


def output_span(cfg: DesignConfig, rows: int) -> int:
    """Cycles from a tile's first output row being valid to just after its last one, for a tile
    of ``rows`` rows (one row every ``row_cycles`` cycles)."""
    return (rows - 1) * cfg.hardware.compute_unit.row_cycles + 1


def tile_period(cfg: DesignConfig, k: int, prev_rows: int) -> int:
    """Cycles between the last-step handshakes of two consecutive tiles (no stalls), when the
    earlier one drains ``prev_rows`` rows."""
    return max(k, prev_rows * cfg.hardware.compute_unit.row_cycles + ARRAY_STAGES)


def gemm_cycles(cfg: DesignConfig, m: int, k: int, n: int) -> int:
    """Cycles of one ``m x k x n`` GEMM with no stalls, from the command handshake (cycle 0) up to
    and including the last output handshake. ``m`` tokens, ``k`` reduction, ``n`` outputs."""
    _check(m, k, n)
    cu = cfg.hardware.compute_unit
    m_tiles, n_tiles = math.ceil(m / cu.rows), math.ceil(n / cu.cols)
    last_rows = m - (m_tiles - 1) * cu.rows
    total = m_tiles * n_tiles
    # Every tile but the last is followed by one more tile: count the periods by the rows the
    # earlier tile drains (full token tiles first, then the partial last token tile).
    full_followed = min(total - 1, (m_tiles - 1) * n_tiles + (n_tiles - 1 if last_rows == cu.rows else 0))
    partial_followed = total - 1 - full_followed
    last_step = (CMD_CYCLES + k - 1
                 + full_followed * tile_period(cfg, k, cu.rows)
                 + partial_followed * tile_period(cfg, k, last_rows))
    return last_step + latency(cfg) + output_span(cfg, last_rows)


def cycles(cfg: DesignConfig, m: int, k: int, n: int) -> int:
    """Alias of :func:`gemm_cycles` (the ``sim.timing`` contract)."""
    return gemm_cycles(cfg, m, k, n)


def utilisation(cfg: DesignConfig, m: int, k: int, n: int) -> float:
    """Useful MACs over array capacity during :func:`gemm_cycles` (``m*k*n / (rows*cols*cycles)``)."""
    cu = cfg.hardware.compute_unit
    return m * k * n / (cu.rows * cu.cols * gemm_cycles(cfg, m, k, n))
