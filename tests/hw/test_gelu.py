"""hw/gelu.py on Verilator against golden/gelu.py (bit-exact) and sim/timing/gelu.py (cycles).

Every test drives ``i`` with :class:`tests.hw.streams.StreamSource` and receives ``o`` with a
:class:`~tests.hw.streams.StreamSink`; the reference model is :func:`golden.gelu.gelu`, evaluated
once over every representable input and looked up per accepted beat, and a
:class:`~tests.hw.streams.Scoreboard` checks that every beat came out once, in order, equal.

Run: ``python -m pytest tests/hw/test_gelu.py -q`` (one Verilator build per config).
"""

from __future__ import annotations

import functools
import os

import cocotb
import numpy as np
import pytest

from golden import gelu as golden
from golden.fixed import quantise, smax, smin
from hw.gelu import input_layout, output_layout
from sim.timing import gelu as timing
from tests.hw import runner
from tests.hw.streams import Bench, always, bursty, latency, random_pattern, throughput

CONFIGS = ["tiny", "m3vit-tiny"]


# --------------------------------------------------------------------------------------------
# Bench helpers
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _golden_lookup(ge) -> np.ndarray:
    """``y[x - smin]`` for every representable input ``x`` (the golden model, evaluated once)."""
    x = np.arange(smin(ge.input_bits), smax(ge.input_bits) + 1, dtype=np.int64)
    return golden.gelu(x, ge)


class GeluBench:
    """A :class:`Bench` with the GELU's source, sink and scoreboard wired to the golden model."""

    def __init__(self, dut, idle=None, backpressure=None):
        self.tb = Bench(dut)
        cfg = self.tb.config()
        self.cfg, self.ge = cfg, cfg.hardware.gelu
        self.src = self.tb.source("i", input_layout(self.ge), idle=idle)
        self.snk = self.tb.sink("o", output_layout(self.ge), backpressure=backpressure)
        self.sb = self.tb.scoreboard("gelu", self.snk)
        table, offset = _golden_lookup(self.ge), smin(self.ge.input_bits)
        self.src.on_accept(lambda item: self.sb.expect(
            {"data": [int(table[x - offset]) for x in item["data"]], "tag": item["tag"]}))

    def beats(self, xs: np.ndarray) -> list[dict]:
        """Input beats carrying ``xs`` (padded to whole beats with 0), ``tag`` = last beat."""
        lanes = self.ge.lanes
        padded = np.concatenate([xs, np.zeros(-len(xs) % lanes, dtype=np.int64)])
        rows = padded.reshape(-1, lanes).tolist()
        return [{"data": row, "tag": int(k == len(rows) - 1)} for k, row in enumerate(rows)]

    async def run(self, xs: np.ndarray) -> list[dict]:
        """Send ``xs``, wait for all outputs, check the scoreboard; return the beats sent."""
        beats = self.beats(xs)
        start = self.snk.count
        await self.src.send(beats)
        await self.snk.wait_for(start + len(beats))
        await self.tb.cycles(timing.latency(self.cfg) + 4)   # anything extra would show now
        self.sb.check()
        return beats


def _extremes(ge) -> np.ndarray:
    """Format extremes, 0, +-1 LSB and both sides of every region boundary, both signs."""
    seg = golden.segmentation(ge)
    edges = [0, 1, seg.fine_end, seg.table_end, 1 << seg.fine_shift, 1 << seg.pos_bits]
    near = [e + d for e in edges for d in (-1, 0, 1)]
    extremes = [smin(ge.input_bits), smin(ge.input_bits) + 1, smax(ge.input_bits)]
    xs = np.array(near + [-v for v in near] + extremes, dtype=np.int64)
    return xs[(xs >= smin(ge.input_bits)) & (xs <= smax(ge.input_bits))]


def _random_inputs(ge, n: int, seed: int) -> np.ndarray:
    """``n`` seeded inputs: half uniform over [-8, 8], half over the whole format."""
    rng = np.random.default_rng(seed)
    lo, hi = quantise(-8.0, ge.input_frac_bits, ge.input_bits), quantise(8.0, ge.input_frac_bits,
                                                                         ge.input_bits)
    return np.concatenate([rng.integers(lo, hi + 1, n // 2),
                           rng.integers(smin(ge.input_bits), smax(ge.input_bits) + 1, n - n // 2)])


# --------------------------------------------------------------------------------------------
# cocotb tests
# --------------------------------------------------------------------------------------------
@cocotb.test()
async def every_input_full_rate(dut):
    """All 2^input_bits inputs (shuffled) at full rate: bit-exact, and latency, throughput and
    total cycles equal to sim/timing/gelu.py."""
    gb = GeluBench(dut, idle=always(), backpressure=always())
    ge = gb.ge
    xs = np.random.default_rng(1).permutation(
        np.arange(smin(ge.input_bits), smax(ge.input_bits) + 1, dtype=np.int64))
    await gb.tb.reset()
    beats = await gb.run(xs)
    ins, outs = gb.src.beats, gb.snk.beats
    assert gb.sb.matched == gb.sb.expected == gb.sb.received == len(beats)
    assert latency(ins, outs) == timing.latency(gb.cfg), latency(ins, outs)
    assert throughput(outs) == throughput(ins) == 1.0 / timing.interval(gb.cfg)
    span = outs[-1].cycle - ins[0].cycle + 1
    assert span == timing.cycles(gb.cfg, len(xs)), (span, timing.cycles(gb.cfg, len(xs)))
    dut._log.info("every input: %d vectors, latency %d, throughput %.3f beats/cycle, %d cycles; "
                  "%s", len(xs), latency(ins, outs), throughput(outs), span, gb.sb.summary())


@cocotb.test()
async def single_beat_latency(dut):
    """One isolated beat: its output is valid exactly ``latency`` cycles after its handshake."""
    gb = GeluBench(dut)
    await gb.tb.reset()
    for x in _extremes(gb.ge)[:8]:
        n_in, n_out = gb.src.count, gb.snk.count
        await gb.run(np.array([x]))
        assert gb.snk.beats[n_out].cycle - gb.src.beats[n_in].cycle == timing.latency(gb.cfg)


@cocotb.test()
async def random_backpressure_long_stalls(dut):
    """Extremes and seeded random inputs through random valid gaps and bursty ready with stalls
    up to 200 cycles: nothing lost, duplicated or wrong."""
    gb = GeluBench(dut, idle=random_pattern(0.7, seed=11),
                   backpressure=bursty(seed=12, max_stall=200, max_burst=40))
    xs = np.concatenate([_extremes(gb.ge), _random_inputs(gb.ge, 6000, seed=13), _extremes(gb.ge)])
    await gb.tb.reset()
    beats = await gb.run(xs)
    assert gb.sb.matched == gb.sb.received == len(beats)
    dut._log.info("back-pressure: %d vectors; %s", len(xs), gb.sb.summary())


@cocotb.test()
async def sink_slower_than_source(dut):
    """A sink ready 1 cycle in 3 with a source always valid: the pipeline holds full, in order."""
    gb = GeluBench(dut, idle=always(), backpressure=random_pattern(0.33, seed=21))
    await gb.tb.reset()
    beats = await gb.run(_random_inputs(gb.ge, 2000, seed=22))
    assert gb.sb.matched == len(beats)


@cocotb.test()
async def reset_mid_stream(dut):
    """Reset while beats are in flight and stalled; nothing from before the reset comes out
    afterwards, and a clean run after it is bit-exact."""
    gb = GeluBench(dut, idle=random_pattern(0.8, seed=31),
                   backpressure=bursty(seed=32, max_stall=20, max_burst=10))
    await gb.tb.reset()
    gb.src.extend(gb.beats(_random_inputs(gb.ge, 3000, seed=33)))
    await gb.snk.wait_for(500)
    await gb.tb.reset(cycles=3)
    assert gb.src.dropped > 0 and gb.sb.flushed > 0, "reset did not land mid-stream"
    await gb.tb.cycles(1)
    assert int(dut.o__valid.value) == 0
    before = gb.snk.count
    beats = await gb.run(_random_inputs(gb.ge, 2000, seed=34))
    assert gb.snk.count - before == len(beats)
    dut._log.info("reset: %s", gb.sb.summary())


# --------------------------------------------------------------------------------------------
# pytest entry points
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_gelu(cfg_name):
    runner.run("gelu", cfg_name, __name__)


#: Config variants the presets do not exercise (Amaranth's simulator, no Verilator build): several
#: lanes with a wide tag, a narrow output that saturates, other table size and formats.
VARIANTS = {
    "4-lanes": {"hardware.gelu.lanes": 4},
    "saturating-output": {"hardware.gelu.output_bits": 17},
    "256-entries-other-formats": {"hardware.gelu.table_entries": 256,
                                  "hardware.gelu.input_frac_bits": 12,
                                  "hardware.gelu.output_bits": 18,
                                  "hardware.gelu.output_frac_bits": 16},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_gelu_variants_amaranth_sim(variant):
    """Bit-exact with golden, tag passed through, under random valid gaps and ready stalls."""
    import random

    from amaranth.sim import Simulator

    from hw.gelu import Gelu
    from moeaccel import config

    cfg = config.load("tiny").replace(VARIANTS[variant])
    ge = cfg.hardware.gelu
    lanes = ge.lanes
    dut = Gelu(cfg, tag_bits=8)
    xs = np.concatenate([_extremes(ge), _random_inputs(ge, 1200, seed=41)])
    xs = np.concatenate([xs, np.zeros(-len(xs) % lanes, dtype=np.int64)]).reshape(-1, lanes)
    expected = golden.gelu(xs, ge).tolist()
    got: list[tuple[list[int], int]] = []
    rng = random.Random(42)

    async def source(ctx):
        for k, row in enumerate(xs.tolist()):
            while rng.random() < 0.3:
                await ctx.tick()
            for lane, x in enumerate(row):
                ctx.set(dut.i.payload.data[lane], x)
            ctx.set(dut.i.payload.tag, k % 256)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while len(got) < len(xs) + 1:
            ctx.set(dut.o.ready, rng.random() < 0.5 if rng.random() < 0.95 else 0)
            _, _, valid, ready, payload = await ctx.tick().sample(dut.o.valid, dut.o.ready,
                                                                  dut.o.payload)
            if valid and ready:
                got.append(([payload.data[lane] for lane in range(lanes)], payload.tag))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run_until(1e-8 * 12 * len(xs))
    assert len(got) == len(xs)   # nothing lost or duplicated (the sink would record extras)
    assert [d for d, _ in got] == expected
    assert [t for _, t in got] == [k % 256 for k in range(len(xs))]
    if variant == "saturating-output":
        assert smax(ge.output_bits) in np.array(expected)   # the saturation path was exercised
