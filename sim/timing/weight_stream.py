"""Timing of the MoE engine's weight streamer (``hw/weight_stream.py``): a weight-buffer slot
replayed into the compute unit's ``bias`` and ``weight`` streams, one beat per cycle each.

A command handshake is cycle 0; the streams read from cycle 1. A bias beat is valid
``BIAS_READ_STAGES`` cycles after its read (the block-RAM read and its output register:
:class:`hw.block_ram.BlockRam`), a weight beat ``WEIGHT_READ_STAGES`` cycles after its read (the
block-RAM read, the word of each bank registered, the word picked within each group of banks
registered, the selected word registered: :class:`hw.banked_memory.BankedMemory`), so the first
weight beat is valid in cycle ``1 + WEIGHT_READ_STAGES``. Back-pressure stalls every read stage;
``done`` pulses when the final weight beat is taken.

The engine's schedule (:mod:`sim.timing.moe_controller`) does not depend on these constants as
long as the first weight beat is valid no later than the gathered activations
(:func:`sim.timing.gather.latency`) and a bias beat no later than its tile's first weight beat
(``BIAS_READ_STAGES <= WEIGHT_READ_STAGES``): the compute unit waits for all three operand
streams.
"""

from __future__ import annotations

from moeaccel.config import DesignConfig
from sim.timing import gather

#: cycles from a bias word's read to its beat being valid
BIAS_READ_STAGES = 2
#: cycles from a weight word's read to its beat being valid
WEIGHT_READ_STAGES = 4
assert BIAS_READ_STAGES <= WEIGHT_READ_STAGES, "a bias beat must not trail its weight beats"


def latency(cfg: DesignConfig) -> int:
    """Cycles from the command handshake (cycle 0) to the first weight beat being valid
    (measured by ``tests/hw/test_weight_buffer.py``). The stream then gives one beat per cycle
    while its consumer takes them, so a command's total is set by the compute unit."""
    return 1 + WEIGHT_READ_STAGES


def hidden_behind_gather(cfg: DesignConfig) -> bool:
    """Whether the first weight beat arrives no later than the first gathered activation beat
    (when the two commands are handshaken together), so that the stream's read stages cost the
    engine no cycle."""
    return latency(cfg) <= gather.latency(cfg)
