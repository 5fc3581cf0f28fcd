"""hw/moe_engine.py on Verilator: whole MoE layers bit-exact against :func:`golden.moe.moe_layer`,
weights served by a DRAM model with latency, limited bandwidth and random stalls, random
back-pressure on the output, reset mid-layer, and the engine's cycle counters (MAC utilisation
during the expert FFNs, prefetch hiding of the weight fetches).

Two builds (each a tiny variant, see :data:`VARIANTS`):

* ``wide``: softmax_topk gating, ``embed_dim = expert_hidden = 64`` (so an expert's GEMMs are
  long enough for the >= 90 % utilisation target on a 4x4 array); routings uniform, Zipf-skewed,
  one expert taking every token, several empty experts; reset mid-layer; performance figures;
* ``mixed``: topk_softmax gating, 3 routed experts + 1 null expert, 1 shared expert, capacity
  factor 1.0 (capacity overflow); the same routings on tiny's dimensions.

Run: ``python -m pytest tests/hw/test_moe_engine.py -q``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, RisingEdge

from golden import moe
from golden.fixed import smax, smin
from hw import queue_store
from hw.gather import GatherLayouts, write_lanes
from hw.moe_controller import start_layout, status_layout
from hw.moe_engine import MoeEngine
from hw.scatter import ScatterLayouts
from hw.weight_fetch import DramLayouts, port_bytes
from hw.weight_image import ImageLayout, weight_image
from moeaccel import config
from sim.timing import gather
from tests.hw import runner
from tests.hw.streams import Bench, bursty, random_pattern, unpack

#: build name -> overrides of the tiny preset
VARIANTS = {
    "wide": {"model.embed_dim": 64, "model.expert_hidden": 64,
             "hardware.buffers.weight_bytes": 16384},
    "mixed": {"model.gating": "topk_softmax", "model.experts": 3, "model.null_experts": 1,
              "model.shared_experts": 1, "model.capacity_factor": 1.0},
}


#: the reference model's size (slow: the 16x16 unit takes minutes to compile): m3vit-tiny with a
#: weight buffer that holds two expert matrices (the preset's 96 KiB holds one, so the engine
#: would single-buffer: see hw.weight_image.buffer_slots)
SLOW_VARIANTS = {"m3vit": ("m3vit-tiny", {"hardware.buffers.weight_bytes": 152 * 1024})}


def variant_config(name: str):
    if name in SLOW_VARIANTS:
        base, overrides = SLOW_VARIANTS[name]
        return config.load(base).replace(overrides)
    return config.load("tiny").replace(VARIANTS[name])


# --------------------------------------------------------------------------------------------
# DRAM model
# --------------------------------------------------------------------------------------------
class DramModel:
    """Serves the engine's DRAM read port from ``image``: each request's beats become available
    ``latency`` cycles after the request is taken, then flow at ``bytes_per_cycle`` on average
    (a token bucket over the port width) with random stalls (probability ``stall_p`` per beat of
    a stall of 1..``max_stall`` cycles). Requests are served in order. A reset drops everything
    in flight."""

    def __init__(self, tb: Bench, cfg, image: bytes, latency: int, bytes_per_cycle: float,
                 stall_p: float = 0.0, max_stall: int = 12, seed: int = 0):
        self.tb, self.image = tb, image
        self.width = port_bytes(cfg)
        self.latency, self.rate = latency, min(1.0, bytes_per_cycle / self.width)
        self.stall_p, self.max_stall = stall_p, max_stall
        self.rng = random.Random(seed)
        lay = DramLayouts(cfg)
        self.req = tb.sink("dram_req", lay.request)
        self.data = tb.source("dram_data", lay.response, idle=self._pattern())
        self.requests = 0
        self.epoch = 0
        self.req.on_beat(lambda beat: cocotb.start_soon(self._serve(beat.item, self.epoch)))
        tb.on_reset(self._on_reset)

    def _on_reset(self) -> None:
        self.epoch += 1

    def _pattern(self):
        credit = 0.0
        while True:
            credit = min(credit + self.rate, 1.0)
            if self.stall_p and self.rng.random() < self.stall_p:
                for _ in range(self.rng.randint(1, self.max_stall)):
                    yield False
            if credit >= 1.0 - 1e-9:
                credit -= 1.0
                yield True
            else:
                yield False

    async def _serve(self, request: dict, epoch: int) -> None:
        self.requests += 1
        await ClockCycles(self.tb.clk, self.latency)
        if epoch != self.epoch:
            return
        w, addr = self.width, request["addr"]
        assert addr % w == 0 and addr + request["beats"] * w <= len(self.image), request
        self.data.extend({"data": int.from_bytes(self.image[a:a + w], "little")}
                         for a in range(addr, addr + request["beats"] * w, w))


# --------------------------------------------------------------------------------------------
# Routings: crafted layers
# --------------------------------------------------------------------------------------------
def crafted(cfg, routing: str, seed: int, task: int) -> tuple[np.ndarray, moe.MoeLayer]:
    """``(x_q, layer)`` of :func:`golden.moe.random_layer` with the gate of ``task`` reshaped:

    * ``uniform``: as drawn;
    * ``zipf``: input feature 0 set to the maximum for every token and gate row 0 a Zipf-decaying
      bias ``127 / (r+1)`` over the router outputs, so low outputs take most tokens;
    * ``one_expert``: the same bias +max for output 1 and -max elsewhere, the rest of the gate
      scaled down: output 1 takes every token;
    * ``empty``: +max for outputs 0 and ``R-1`` (top-2), -max for the others: those are empty;
    * ``extreme``: every input -128 or +127 (saturating logits, GELU inputs and outputs).
    """
    x_q, layer = moe.random_layer(cfg, seed)
    if routing == "uniform":
        return x_q, layer
    bits, r = cfg.hardware.compute_unit.operand_bits, cfg.model.router_outputs
    hi, lo = smax(bits), smin(bits)
    if routing == "extreme":
        return np.where(np.random.default_rng(seed).random(x_q.shape) < 0.5, lo, hi), layer
    x_q = x_q.copy()
    x_q[:, 0] = hi
    gate = layer.gate_q.copy()
    if routing == "zipf":
        gate[task, 0] = [round(hi / (e + 1)) for e in range(r)]
    else:
        gate[task, 1:] //= 16
        hot = [1] if routing == "one_expert" else [0, r - 1]
        gate[task, 0] = [hi if e in hot else lo for e in range(r)]
    return x_q, dataclasses.replace(layer, gate_q=gate)


# --------------------------------------------------------------------------------------------
# Bench
# --------------------------------------------------------------------------------------------
class EngineBench:
    """The engine's ports: ``x`` loader, ``start``, the DRAM model, the ``out`` sink."""

    def __init__(self, dut, backpressure=None, seed: int = 0):
        self.tb = tb = Bench(dut)
        self.cfg = cfg = config.load(os.environ["MOEACCEL_CONFIG"]).replace(
            json.loads(os.environ["MOEACCEL_OVERRIDES"]))
        self.lanes = write_lanes(cfg)
        self.x = tb.source("x", GatherLayouts(cfg).write)
        self.start = tb.source("start", start_layout(cfg))
        self.out = tb.sink("out", ScatterLayouts(cfg).result, backpressure)
        self.status_layout = status_layout(cfg)
        self.dram: DramModel | None = None
        self.seed = seed

    def attach_dram(self, image: bytes, **kwargs) -> DramModel:
        if self.dram is None:
            self.dram = DramModel(self.tb, self.cfg, image, seed=self.seed, **kwargs)
        else:
            self.dram.image = image
            for key, value in kwargs.items():
                setattr(self.dram, {"bytes_per_cycle": "rate"}.get(key, key),
                        min(1.0, value / self.dram.width) if key == "bytes_per_cycle" else value)
        return self.dram

    def status(self) -> dict:
        return unpack(self.status_layout, int(self.tb.dut.status.value))

    async def load_x(self, x_q: np.ndarray) -> None:
        flat = np.asarray(x_q).ravel().tolist()
        flat += [0] * (-len(flat) % self.lanes)
        await self.x.send({"addr": a, "data": flat[a * self.lanes:(a + 1) * self.lanes]}
                          for a in range(len(flat) // self.lanes))

    async def layer(self, x_q, layer, task: int = 0) -> tuple[np.ndarray, dict]:
        """Load ``x_q``, run the layer, return ``(out [T, D], status)``."""
        cfg = self.cfg
        await self.load_x(x_q)
        first = self.out.count
        await self.start.send([{"task": task, "clear": 0}])
        tokens, words = cfg.model.tokens, -(-cfg.model.embed_dim // cfg.hardware.compute_unit.cols)
        await self.wait_done()
        assert self.out.count == first + tokens * words, (self.out.count - first, tokens * words)
        beats = self.out.items[first:]
        assert beats[-1]["last"] and not any(b["last"] for b in beats[:-1])
        out = np.array([lane for b in beats for lane in b["data"]]).reshape(tokens, -1)
        assert [b["token"] for b in beats] == [t for t in range(tokens) for _ in range(words)]
        return out[:, :cfg.model.embed_dim], self.status()

    async def wait_done(self, window: int = 5_000) -> None:
        """Wait until ``busy`` falls; fail if no MAC step, DRAM cycle or output beat happened in
        a ``window``-cycle interval (a hang; a long layer is fine)."""
        await RisingEdge(self.tb.clk)
        progress = None
        while int(self.tb.dut.busy.value):
            await ClockCycles(self.tb.clk, 1)
            if self.tb.cycle % window == 0:
                st = self.status()
                now = (st["mac_steps"], st["dram_busy"], self.out.count)
                assert now != progress, f"engine hung: no progress in {window} cycles: {st}"
                progress = now
        await RisingEdge(self.tb.clk)

    async def clear(self) -> None:
        """Read the output accumulators out and discard them (after a reset mid-layer)."""
        await self.start.send([{"task": 0, "clear": 1}])
        await self.wait_done()


async def check_layer(eb: EngineBench, routing: str, seed: int, task: int) -> dict:
    cfg = eb.cfg
    x_q, layer = crafted(cfg, routing, seed, task)
    image, _ = weight_image(layer, cfg)
    eb.attach_dram(image)
    expected = moe.moe_layer(x_q, layer, cfg, task)
    out, status = await eb.layer(x_q, layer, task)
    bad = np.argwhere(out != expected.out_q)
    assert not len(bad), (f"{routing}: {len(bad)} of {out.size} outputs differ, first at "
                          f"{bad[0].tolist()}: got {out[tuple(bad[0])]}, "
                          f"expected {expected.out_q[tuple(bad[0])]}")
    assert status["dropped"] == expected.dropped, (status, expected.dropped)
    assert status["null_slots"] == expected.routing.null_slots, status
    assert status["experts"] == len(expected.order), (status, expected.order)
    assert status["fetches"] == 1 + 2 * len(expected.order), status
    eb.tb.log.info("%s (task %d): %d outputs bit-exact; order %s, counts %s, dropped %d; %s",
                   routing, task, out.size, expected.order, expected.counts.tolist(),
                   expected.dropped, status)
    return {"status": status, "expected": expected}


ROUTINGS = ("uniform", "zipf", "one_expert", "empty", "extreme")


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
