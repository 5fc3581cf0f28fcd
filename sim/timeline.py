"""Plays a schedule's steps against the DRAM channel and the weight buffer: closed-form events
per step (no per-cycle loop), so a whole model takes milliseconds.

For step ``i`` (compute ``c_i`` cycles, DRAM reads ``r_i`` bytes of weights and activations):

* its reads are issued, in program order, when the channel is free, when its weight slot is free
  (the weight-using step ``slots`` before it has released its slot: ``slots`` is the step's own,
  else 2 when double-buffered and 1 otherwise; a step releases its slot at its end unless it
  says earlier, ``release``: the MoE engine frees a slot once its last weight beat has been
  streamed) and, if it has a dependency (``after``), when that step has finished; they complete
  :func:`sim.dram.request_cycles` later, plus the step's ``fetch_overhead`` (the engine's fetch
  command and done cycles) before the channel takes the next request;
* it starts when the previous step has finished plus its ``gap`` (the engine's wait cycle
  between GEMMs) and its reads have completed plus ``fetch_after``; the difference is a **DRAM
  stall** (the compute pipeline waits for data; for weight steps also ``weight_wait_cycles``,
  the engine's ``status.weight_wait``);
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
    #: cycles steps with weights waited for them beyond their gap (the engine's ``weight_wait``)
    weight_wait_cycles: int = 0
    #: request cycles (latency + transfer) of the weight fetches (the engine's ``dram_busy``)
    fetch_busy_cycles: int = 0
    #: weight fetches issued
    fetches: int = 0


def play(cfg: DesignConfig, steps: list[Step]) -> Timeline:
    """Run ``steps`` in order; see the module docstring for the rules."""
    default_slots = 2 if cfg.hardware.buffers.double_buffered else 1
    end = [0] * len(steps)
    channel_free = 0        # cycle the DRAM channel takes its next request
    now = 0                 # cycle the previous step finished
    releases: list[int] = []   # cycles the weight-using steps so far freed their slots
    stall = dram_busy = weight_bytes = act_bytes = wait = fetch_busy = fetches = 0
    for i, s in enumerate(steps):
        reads = s.weight_bytes + s.act_read_bytes
        earliest = now + s.gap
        ready = earliest
        if reads:
            issue = channel_free
            if s.weight_bytes:
                slots = s.slots or default_slots
                if len(releases) >= slots:
                    issue = max(issue, releases[-slots])
            if s.act_read_bytes:
                issue = max(issue, now)  # activations exist once the previous step produced them
            if s.after >= 0:
                issue = max(issue, end[s.after])
            request = request_cycles(cfg, reads)
            channel_free = issue + request + s.fetch_overhead
            dram_busy += transfer_cycles(cfg, reads)
            ready = max(ready, channel_free + s.fetch_after)
        stall += ready - earliest
        start = ready
        now = end[i] = start + s.cycles
        if s.weight_bytes:
            wait += start - earliest
            fetch_busy += request_cycles(cfg, s.weight_bytes)
            fetches += 1
            releases.append(start + (s.cycles if s.release is None else s.release))
        if s.act_write_bytes:
            channel_free = max(channel_free, now) + request_cycles(cfg, s.act_write_bytes)
            dram_busy += transfer_cycles(cfg, s.act_write_bytes)
        weight_bytes += s.weight_bytes
        act_bytes += s.act_read_bytes + s.act_write_bytes
    total = max(now, channel_free)
    stall += total - now
    return Timeline(total_cycles=total, stall_cycles=stall, dram_busy_cycles=dram_busy,
                    weight_bytes=weight_bytes, activation_bytes=act_bytes,
                    weight_wait_cycles=wait, fetch_busy_cycles=fetch_busy, fetches=fetches)
