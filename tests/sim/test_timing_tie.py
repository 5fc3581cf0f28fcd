"""The simulator is built on the per-block timing functions that the RTL tests hold the hardware
to (``sim.timing``): change a block's timing and the simulation follows, cycle for cycle."""

from __future__ import annotations

import pytest

from sim import queues, schedule, timeline
from sim.simulator import prepare, simulate
from sim.timing import compute_unit, softmax

EXTRA = 100_000  # large enough that the compute unit sets the pace of every step it is in


def _fast_dram(cfg):
    return cfg.replace({"hardware.dram.bytes_per_cycle": 1e9, "hardware.dram.latency_cycles": 0})


def test_every_gemm_takes_the_compute_units_cycles(m3vit, monkeypatch):
    cfg, wl = prepare(_fast_dram(m3vit), "m3vit-tiny")
    base = simulate(cfg, wl)
    layer_queues = {l: queues.fill(cfg, e) for l, (e, _) in wl.routing[0].items()}
    gemms = sum(1 for s in schedule.build(cfg, wl.layers, layer_queues, True) if s.busy[0])
    original = compute_unit.gemm_cycles
    monkeypatch.setattr(compute_unit, "gemm_cycles", lambda c, m, k, n: original(c, m, k, n) + EXTRA)
    slower = simulate(cfg, wl)
    assert slower.busy_cycles["compute_unit"] - base.busy_cycles["compute_unit"] == EXTRA * gemms
    # Every GEMM step gets EXTRA longer, less the slack a slower consumer (softmax after the
    # scores, the router after the gate GEMM) had left in it before.
    slack = (cfg.model.heads * cfg.model.layers + len(cfg.model.moe_layers)) * EXTRA
    assert EXTRA * gemms - slack <= slower.total_cycles - base.total_cycles <= EXTRA * gemms


def test_attention_follows_the_softmax_timing(m3vit, monkeypatch):
    cfg, wl = prepare(_fast_dram(m3vit), "m3vit-tiny")
    base = simulate(cfg, wl)
    original = softmax.cycles
    monkeypatch.setattr(softmax, "cycles", lambda c, rows, length: original(c, rows, length) + EXTRA)
    slower = simulate(cfg, wl)
    heads = cfg.model.heads * cfg.model.layers
    assert slower.busy_cycles["softmax"] - base.busy_cycles["softmax"] == EXTRA * heads
    # each scores step now waits for its (slower) softmax
    assert slower.total_cycles - base.total_cycles == pytest.approx(EXTRA * heads, rel=0.02)


def test_timeline_adds_only_dram_stalls_to_the_blocks_cycles(m3vit):
    cfg, wl = prepare(m3vit, "m3vit-tiny")
    layer_queues = {l: queues.fill(cfg, e) for l, (e, _) in wl.routing[0].items()}
    steps = schedule.build(cfg, wl.layers, layer_queues, True)
    tl = timeline.play(cfg, steps)
    # (the MoE engine's steps also wait its GEMM_GAP cycle between GEMMs: not a DRAM stall)
    assert tl.total_cycles == sum(s.cycles + s.gap for s in steps) + tl.stall_cycles
