"""Timing of the GELU block (``hw/gelu.py``): a fully pipelined stream function.

The unit accepts one beat of ``hardware.gelu.lanes`` inputs per cycle and returns one beat of
``lanes`` outputs per cycle, in order, after a fixed pipeline latency:

* stage 1: |x| -> segment index (the table address) and position, registered; ReLU;
* stage 2: the table's 16-word pieces read at the address's low bits, each word registered;
* stage 3: the piece at the address's high bits selected into the table-word register;
* stage 4: slope and position into the lane's multiplier's input registers (the DSP's own),
  ReLU minus segment base in parallel;
* stage 5: slope x position into the multiplier's output register;
* stage 6: subtract, round, saturate into the output register.

Cycle convention (shared with ``tests/hw/test_gelu.py``, which measures the RTL): the cycle in
which the first input beat is accepted is cycle 0. With no stalls, beat ``k`` is accepted in
cycle ``k`` and its output is presented (``valid``) in cycle ``k + latency``; a job of ``n``
elements therefore ends with the handshake of its last output in cycle
``beats(n) - 1 + latency``, i.e. it spans :func:`cycles` cycles.

``tests/hw/test_gelu.py`` measures the Verilated RTL and asserts these numbers: latency 6,
1 beat per cycle, 65542 cycles for all 65536 16-bit inputs on one lane.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig

#: register stages between the input handshake and the output register (inclusive)
PIPELINE_STAGES = 6


def beats(cfg: DesignConfig, n: int) -> int:
    """Stream beats that carry ``n`` elements at ``lanes`` elements per beat."""
    if n < 0:
        raise ValueError(f"element count must be >= 0, got {n}")
    return math.ceil(n / cfg.hardware.gelu.lanes)


def latency(cfg: DesignConfig) -> int:
    """Cycles from an input beat's handshake to its output beat becoming valid."""
    return PIPELINE_STAGES


def interval(cfg: DesignConfig) -> int:
    """Steady-state cycles between beats (fully pipelined: 1)."""
    return 1


def cycles(cfg: DesignConfig, n: int) -> int:
    """Cycles for ``n`` elements with no stalls: from the first input handshake (cycle 0) through
    the last output handshake, inclusive. Zero elements take zero cycles."""
    b = beats(cfg, n)
    return 0 if b == 0 else b * interval(cfg) + latency(cfg)
