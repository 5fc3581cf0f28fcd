"""Timing of the scatter-accumulate back end (``hw/scatter.py``).

Accumulate: one output row (``cols`` outputs of one queue entry) per cycle; a row's
read-modify-write takes ``RMW_STAGES`` cycles before its write (memory read issued with ``gate``
and ``y`` registered; read data, products and forwarding choices registered; add with
forwarding and saturation; write), rows to the same token back to back never stall (forwarding
from the two rows ahead that the read cannot see). Read-out: one word of ``cols`` finalised outputs per cycle
after ``READOUT_STAGES`` (memory read, read data register, finalise register).

Cycle convention (asserted by ``tests/hw/test_scatter.py``): a command's handshake is cycle 0.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig

#: cycles spent accepting a command before its first row / read
CMD_CYCLES = 1
#: earliest cycle (the command's handshake is cycle 0) in which the first output row is taken:
#: the command in cycle 0, the row's route entry (token, gate) in cycle 1, the row in cycle 2
FIRST_ROW_CYCLE = 2
#: stages from a row's handshake to its memory write (the write is in cycle handshake + 3)
RMW_STAGES = 3
#: stages from a read-out word's memory read to its result beat being valid
READOUT_STAGES = 3


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
