"""Plays a schedule's steps against the DRAM channel and the weight buffer: closed-form events
per step (no per-cycle loop), so a whole model takes milliseconds.

For step ``i`` (compute ``c_i`` cycles, DRAM reads ``r_i`` bytes of weights and activations):

* its reads are issued, in program order, when the channel is free, when its weight slot is free
  (the weight-using step two before it has finished when double-buffered, the previous one
  otherwise) and, if it has a dependency (``after``), when that step has finished; they complete
  :func:`sim.dram.request_cycles` later;
* it starts when the previous step has finished and its reads have completed; the difference is
  a **DRAM stall** (the compute pipeline waits for data);
* its writes (spilled activations, the model output) are issued after it finishes and occupy the
  channel; the run ends when both the last step and the last write have finished (a wait at the
  end for the last write also counts as stall).

So with double buffering the stall before expert ``j`` is ``max(0, fetch_j - compute_{j-1})``,
plus the whole first fetch (latency included) where nothing precedes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeaccel.config import DesignConfig

from .dram import request_cycles, transfer_cycles
from .schedule import Step


@dataclass(frozen=True)
class Timeline:
    total_cycles: int
    stall_cycles: int
    dram_busy_cycles: int
    weight_bytes: int
    activation_bytes: int


def play(cfg: DesignConfig, steps: list[Step]) -> Timeline:
    """Run ``steps`` in order; see the module docstring for the rules."""
    double = cfg.hardware.buffers.double_buffered
    end = [0] * len(steps)
    channel_free = 0        # cycle the DRAM channel takes its next request
    now = 0                 # cycle the previous step finished
    slot_ends = [0, 0]      # finish cycles of the last two weight-using steps (older first)
    stall = dram_busy = weight_bytes = act_bytes = 0
    for i, s in enumerate(steps):
        reads = s.weight_bytes + s.act_read_bytes
        ready = now
        if reads:
            issue = channel_free
            if s.weight_bytes:
                issue = max(issue, slot_ends[0] if double else slot_ends[1])
            if s.act_read_bytes:
                issue = max(issue, now)  # activations exist once the previous step produced them
            if s.after >= 0:
                issue = max(issue, end[s.after])
            channel_free = issue + request_cycles(cfg, reads)
            dram_busy += transfer_cycles(cfg, reads)
            ready = max(ready, channel_free)
        stall += ready - now
        now = end[i] = ready + s.cycles
        if s.weight_bytes:
            slot_ends = [slot_ends[1], now]
        if s.act_write_bytes:
            channel_free = max(channel_free, now) + request_cycles(cfg, s.act_write_bytes)
            dram_busy += transfer_cycles(cfg, s.act_write_bytes)
        weight_bytes += s.weight_bytes
        act_bytes += s.act_read_bytes + s.act_write_bytes
    total = max(now, channel_free)
    stall += total - now
    return Timeline(total_cycles=total, stall_cycles=stall, dram_busy_cycles=dram_busy,
                    weight_bytes=weight_bytes, activation_bytes=act_bytes)
