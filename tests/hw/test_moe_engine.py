"""hw/moe_engine.py on Verilator: whole MoE layers bit-exact against :func:`golden.moe.moe_layer`,
weights served by a DRAM model with latency, limited bandwidth and random stalls, random
back-pressure on the output, reset mid-layer, and the engine's cycle counters (MAC utilisation
during the expert FFNs, prefetch hiding of the weight fetches).

Two builds (each a tiny variant, :data:`moeaccel.benches.moe_engine.VARIANTS`, shared with
``moeaccel validate``; the DRAM model, the bench and the crafted routings live in the library:
:mod:`moeaccel.benches.dram`, :mod:`moeaccel.benches.moe_engine`,
:mod:`moeaccel.benches.routings`):

* ``wide``: softmax_topk gating, ``embed_dim = expert_hidden = 64`` (so an expert's GEMMs are
  long enough for the >= 90 % utilisation target on a 4x4 array); routings uniform, Zipf-skewed,
  one expert taking every token, several empty experts; reset mid-layer; performance figures;
* ``mixed``: topk_softmax gating, 3 routed experts + 1 null expert, 1 shared expert, capacity
  factor 1.0 (capacity overflow); the same routings on tiny's dimensions.

Run: ``python -m pytest tests/hw/test_moe_engine.py -q``.
"""

from __future__ import annotations

import json

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge

from hw import queue_store
from hw.moe_engine import MoeEngine
from hw.weight_fetch import port_bytes
from moeaccel.weight_image import ImageLayout, weight_image
from moeaccel.benches.moe_engine import (SLOW_VARIANTS, VARIANTS, EngineBench, run_layer,
                                         variant_config)
from moeaccel.benches.routings import ROUTINGS, crafted
from sim.timing import gather
from tests.hw import runner
from tests.hw.streams import bursty, random_pattern


async def check_layer(eb: EngineBench, routing: str, seed: int, task: int) -> dict:
    """:func:`moeaccel.benches.moe_engine.run_layer`: bit-exact, golden's routing counts."""
    status, expected = await run_layer(eb, routing, seed, task)
    return {"status": status, "expected": expected}


# --------------------------------------------------------------------------------------------
# cocotb tests
# --------------------------------------------------------------------------------------------
@cocotb.test()
async def routings_bit_exact(dut):
    """Every routing of :func:`crafted`, task 0 and 1, through a slow, stalling DRAM (latency
    3x the config's, half its bandwidth, random stalls) and bursty back-pressure on ``out``:
    bit-exact with golden, dropped/expert/fetch counts as golden's schedule."""
    eb = EngineBench(dut, backpressure=bursty(seed=7, max_stall=12, max_burst=8), seed=3)
    dram = eb.cfg.hardware.dram
    eb.attach_dram(b"", latency=3 * dram.latency_cycles, bytes_per_cycle=dram.bytes_per_cycle / 2,
                   stall_p=0.05)
    await eb.tb.reset()
    await eb.clear()
    results = []
    for i, routing in enumerate(ROUTINGS):
        results.append(await check_layer(eb, routing, seed=10 + i, task=i % 2))
    if eb.cfg.model.capacity_factor is not None:
        assert any(r["expected"].dropped for r in results), "no capacity overflow exercised"
    if eb.cfg.model.router_outputs == 4 and eb.cfg.model.experts == 4:
        counts = [r["expected"].counts for r in results]
        assert counts[2][1] == eb.cfg.model.tokens          # one expert takes every token
        assert np.count_nonzero(counts[3]) == 2             # several empty experts


@cocotb.test()
async def reset_mid_layer(dut):
    """Reset in the middle of a layer (during an expert), one clear, then a clean layer:
    bit-exact."""
    eb = EngineBench(dut, backpressure=random_pattern(0.7, seed=5), seed=4)
    cfg = eb.cfg
    await eb.tb.reset()
    await eb.clear()
    x_q, layer = crafted(cfg, "uniform", 21, 0)
    eb.attach_dram(weight_image(layer, cfg)[0], latency=cfg.hardware.dram.latency_cycles,
                   bytes_per_cycle=cfg.hardware.dram.bytes_per_cycle, stall_p=0.02)
    await eb.load_x(x_q)
    await eb.start.send([{"task": 0, "clear": 0}])
    while eb.status()["experts"] == 0 or eb.status()["ffn_steps"] < 200:
        await RisingEdge(eb.tb.clk)
    await eb.tb.reset()
    await eb.clear()
    await check_layer(eb, "uniform", seed=22, task=1)


@cocotb.test()
async def counters_and_performance(dut):
    """Ample DRAM bandwidth (the port's full width, the config's latency, no stalls) and no
    back-pressure, uniform routing: MAC utilisation during the expert FFNs (``ffn_steps /
    ffn_cycles``) >= 90 % and the prefetch hides >= 80 % of the fetch time (``1 - weight_wait /
    dram_busy``) on the ``wide`` (and m3vit-tiny) variant; MAC steps equal to the GEMMs' array
    steps and DRAM busy cycles to latency + beats per fetch."""
    eb = EngineBench(dut, seed=6)
    cfg = eb.cfg
    await eb.tb.reset()
    await eb.clear()
    eb.attach_dram(b"", latency=cfg.hardware.dram.latency_cycles,
                   bytes_per_cycle=float(port_bytes(cfg)))
    r = await check_layer(eb, "uniform", seed=30, task=0)
    st, expected = r["status"], r["expected"]
    cu, m = cfg.hardware.compute_unit, cfg.model
    steps = -(-m.tokens // cu.rows) * -(-m.router_outputs // cu.cols) * m.embed_dim
    for kind, e in expected.order:
        count = m.tokens if kind == "shared" else int(expected.counts[e])
        tiles = -(-count // cu.rows)
        steps += tiles * (-(-m.expert_hidden // cu.cols) * m.embed_dim
                          + -(-m.embed_dim // cu.cols) * m.expert_hidden)
    assert st["mac_steps"] == steps, (st["mac_steps"], steps)
    # at full DRAM rate a fetch is busy for the request latency plus one cycle per beat
    img, width = ImageLayout.of(cfg), port_bytes(cfg)
    beats = (img.gate.bytes + len(expected.order) * img.expert_bytes) // width
    latency = cfg.hardware.dram.latency_cycles
    assert st["dram_busy"] == st["fetches"] * latency + beats, (st, beats)
    assert st["ffn_steps"] <= st["ffn_cycles"] < st["cycles"]
    # each expert GEMM: the gathered GEMM's cycles plus the queue store's read stage
    ffn_model = 0
    for kind, e in expected.order:
        count = m.tokens if kind == "shared" else int(expected.counts[e])
        ffn_model += sum(gather.gathered_gemm_cycles(cfg, count, k, n) + queue_store.READ_STAGES
                         for k, n in ((m.embed_dim, m.expert_hidden),
                                      (m.expert_hidden, m.embed_dim)))
    assert st["ffn_cycles"] == ffn_model, (st["ffn_cycles"], ffn_model)
    util = st["ffn_steps"] / st["ffn_cycles"]
    hidden = 1 - st["weight_wait"] / st["dram_busy"]
    eb.tb.log.info("performance: %d cycles, %d MAC steps (%.1f%% of all cycles); FFN: %d steps "
                   "in %d cycles = %.1f%% utilisation; DRAM busy %d cycles, GEMMs waited %d "
                   "for weights: prefetch hides %.1f%%", st["cycles"], st["mac_steps"],
                   100 * st["mac_steps"] / st["cycles"], st["ffn_steps"], st["ffn_cycles"],
                   100 * util, st["dram_busy"], st["weight_wait"], 100 * hidden)
    if m.embed_dim >= 64:
        assert util >= 0.90, f"MAC utilisation during the FFNs {util:.3f} < 0.90"
        assert hidden >= 0.80, f"prefetch hides {hidden:.3f} < 0.80 of the fetch time"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_moe_engine(variant):
    cfg = variant_config(variant)
    runner.run_component(f"moe_engine_{variant}", lambda: MoeEngine(cfg), __name__,
                         key=variant, cfg_name="tiny",
                         extra_env={"MOEACCEL_OVERRIDES": json.dumps(VARIANTS[variant])})


@pytest.mark.slow
def test_moe_engine_m3vit_tiny():
    """One uniform layer at the reference model's size: bit-exact, utilisation and prefetch."""
    base, overrides = SLOW_VARIANTS["m3vit"]
    cfg = variant_config("m3vit")
    runner.run_component("moe_engine_m3vit", lambda: MoeEngine(cfg), __name__, key="m3vit",
                         cfg_name=base, testcase="counters_and_performance",
                         extra_env={"MOEACCEL_OVERRIDES": json.dumps(overrides)})
