"""Timing of the scatter-accumulate back end (``hw/scatter.py``).

Accumulate: one output row (``cols`` outputs of one queue entry) per cycle, the first
``FIRST_ROW_CYCLE`` cycles after the command at the earliest (a route entry's first memory word
is a pipelined multiply, ``BASE_STAGES``); a row's read-modify-write takes ``RMW_STAGES``
cycles before its write (memory read issued with ``gate`` and ``y`` into the DSPs' input
registers; products and forwarding choices registered; add onto the block RAM's output register
or a forwarded word, with saturation; write), rows to the same token back to back never stall
(forwarding from the three rows ahead that the read cannot see). Read-out: one word of ``cols``
finalised outputs per cycle after ``READOUT_STAGES`` (memory read, the block RAM's output
register, decode register, finalise register).

Cycle convention (asserted by ``tests/hw/test_scatter.py``): a command's handshake is cycle 0.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig

#: cycles spent accepting a command before its first row / read
CMD_CYCLES = 1
#: cycles from a route entry's handshake until its first memory word (``token * words``, a
#: pipelined DSP multiply: :data:`hw.multiplier.STAGES`) is usable by a row
BASE_STAGES = 2
#: earliest cycle (the command's handshake is cycle 0) in which the first output row is taken:
#: the command in cycle 0, the row's route entry (token, gate) in cycle 1, its first memory word
#: BASE_STAGES cycles later (cycle 3), the row in the cycle after (cycle 4)
FIRST_ROW_CYCLE = 2 + BASE_STAGES
#: stages from a row's handshake to its memory write (the write is in cycle handshake + 4)
RMW_STAGES = 4
#: stages from a read-out word's memory read to its result beat being valid
READOUT_STAGES = 4


def words(cfg: DesignConfig, tokens: int, n: int) -> int:
    """Memory words of ``tokens`` tokens of ``n`` outputs (``ceil(n/cols)`` per token)."""
    return tokens * math.ceil(n / cfg.hardware.compute_unit.cols)


def latency(cfg: DesignConfig) -> int:
    """Cycles from a row's handshake to its sum being written (visible to later rows at once,
    through forwarding)."""
    return RMW_STAGES


def accumulate_cycles(cfg: DesignConfig, rows: int) -> int:
    """Cycles from the first row's handshake through the last row's memory write, ``rows``
    output rows arriving every cycle."""
    return rows + RMW_STAGES


def next_command_after_rows(cfg: DesignConfig) -> int:
    """Cycles from an accumulate command's last row handshake to the earliest next command
    handshake (the read-modify-write pipeline has drained)."""
    return RMW_STAGES + 1


def readout_cycles(cfg: DesignConfig, tokens: int, n: int) -> int:
    """Cycles of a read-out of ``tokens`` tokens with ``result`` always ready: from the command
    handshake (cycle 0) through the last result handshake inclusive. The next command is
    accepted the cycle after."""
    return CMD_CYCLES + words(cfg, tokens, n) + READOUT_STAGES


def cycles(cfg: DesignConfig, tokens: int, n: int) -> int:
    """The ``sim.timing`` contract: a read-out of ``tokens`` tokens (:func:`readout_cycles`);
    accumulation runs at the compute unit's output rate (one row per cycle)."""
    return readout_cycles(cfg, tokens, n)
