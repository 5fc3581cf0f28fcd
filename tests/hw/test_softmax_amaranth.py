"""hw/softmax.py in Amaranth's Python simulator: a fast bit-exact and cycle-exact sanity check.

The thorough, stressed checks run on Verilator in ``tests/hw/test_softmax.py``; this one needs no
build and catches most regressions in seconds.

The shared stream layer (:mod:`tests.hw.streams`) drives cocotb handles (its sources and sinks are
cocotb tasks awaiting cocotb edge triggers), so it cannot drive Amaranth's simulator; this bench
keeps its own small driver, built on the layer's valid/ready patterns and its source rule (once
valid is up it stays up, payload stable, until the beat is taken).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import softmax as golden
from hw.softmax import Softmax
from moeaccel import config
from sim.timing import softmax as timing
from tests.hw.streams import Pattern, always, bursty, random_pattern


def _simulate(cfg, rows: list[np.ndarray], in_valid: Pattern | None = None,
              out_ready: Pattern | None = None) -> tuple[list[dict], list[int], int]:
    """Stream ``rows`` in, valid per ``in_valid`` (default: always), ready per ``out_ready``
    (default: always); collect outputs. Returns (outputs, cycle of each output handshake, cycle
    of the first input handshake)."""
    dut = Softmax(cfg)
    beats = [(int(x), j == len(r) - 1) for r in rows for j, x in enumerate(r)]
    total = len(beats)
    in_valid = in_valid or always()
    out_ready = out_ready or always()
    outputs: list[dict] = []
    out_cycles: list[int] = []
    first_in: list[int] = []

    async def bench(ctx):
        cycle, k, offering = 0, 0, False
        while len(outputs) < total:
            offering = k < total and (offering or next(in_valid))
            ctx.set(dut.i.valid, offering)
            if offering:
                ctx.set(dut.i.payload, {"logit": beats[k][0], "last": beats[k][1]})
            ready = next(out_ready)
            ctx.set(dut.o.ready, ready)
            await ctx.delay(1e-9)
            if offering and ctx.get(dut.i.ready):
                if k == 0:
                    first_in.append(cycle)
                k, offering = k + 1, False
            if ctx.get(dut.o.valid) and ready:
                p = ctx.get(dut.o.payload)
                outputs.append({"prob": p.prob, "max": p.max, "recip": p.recip, "last": p.last})
                out_cycles.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < 100 * total + 1000, "timeout"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outputs, out_cycles, first_in[0]


def _expected(cfg, rows: list[np.ndarray]) -> list[dict]:
    sm = cfg.hardware.softmax
    exp = []
    for r in rows:
        g = golden.softmax(r, sm)
        for j, p in enumerate(g.probs_q):
            exp.append({"prob": int(p), "max": int(g.max_q), "recip": int(g.recip_q),
                        "last": int(j == len(r) - 1)})
    return exp


@pytest.mark.parametrize("length", [1, 3, 16, 64])
def test_bit_exact_and_cycle_exact(length):
    cfg = config.load("tiny")
    sm = cfg.hardware.softmax
    rng = np.random.default_rng(length)
    rows = [golden.quantise_logits(rng.normal(0, 3, length), sm) for _ in range(5)]
    rows[0][:] = rows[0][0]                        # all equal
    outs, cycles, first = _simulate(cfg, rows)
    assert outs == _expected(cfg, rows)
    assert first == 0
    want = [c for t in timing.schedule(cfg, len(rows), length)
            for c in range(t.first_out, t.last_out + 1)]
    assert cycles == want
    assert cycles[-1] + 1 == timing.cycles(cfg, len(rows), length)


def test_mixed_lengths_cycle_exact():
    cfg = config.load("tiny")
    sm = cfg.hardware.softmax
    rng = np.random.default_rng(5)
    lengths = [1, 5, 64, 2, 1, 1, 30, 17, 3, 64, 1]
    rows = [golden.quantise_logits(rng.normal(0, 2, n), sm) for n in lengths]
    outs, cycles, _ = _simulate(cfg, rows)
    assert outs == _expected(cfg, rows)
    assert cycles == [c for t in timing.schedule_lengths(cfg, lengths)
                      for c in range(t.first_out, t.last_out + 1)]


def test_back_pressure_and_mixed_lengths():
    cfg = config.load("tiny")
    sm = cfg.hardware.softmax
    rng = np.random.default_rng(7)
    lengths = [1, 5, 64, 2, 1, 1, 30, 17]
    rows = [golden.quantise_logits(rng.normal(0, 4, n), sm) for n in lengths]
    rows[1][2] = -(1 << (sm.input_bits - 1))
    rows[1][3] = (1 << (sm.input_bits - 1)) - 1
    outs, _, _ = _simulate(cfg, rows, in_valid=random_pattern(0.7, seed=8),
                           out_ready=random_pattern(0.6, seed=7))
    assert outs == _expected(cfg, rows)
    outs, _, _ = _simulate(cfg, rows, in_valid=bursty(seed=9, max_stall=8, max_burst=40),
                           out_ready=bursty(seed=10, max_stall=60, max_burst=20))
    assert outs == _expected(cfg, rows)


@pytest.mark.parametrize("overrides", [
    {"hardware.softmax.divider_bits_per_cycle": 1},
    {"hardware.softmax.divider_bits_per_cycle": 3, "hardware.softmax.exp_table_entries": 32},
    {"hardware.softmax.exp_frac_bits": 18, "hardware.softmax.sum_frac_bits": 16},
    {"hardware.softmax.input_bits": 8, "hardware.softmax.input_frac_bits": 0,
     "hardware.softmax.max_row_length": 5, "hardware.softmax.prob_frac_bits": 8},
    {"hardware.softmax.accumulate_interval": 2},
], ids=["div1", "div3-table32", "ef18-sf16", "int8-short-rows", "interval2"])
def test_other_configs_bit_and_cycle_exact(overrides):
    """Every width and size follows the config: non-default settings stay bit- and cycle-exact."""
    cfg = config.load("tiny").replace(overrides)
    sm = cfg.hardware.softmax
    rng = np.random.default_rng(9)
    lengths = [1, sm.max_row_length, 2, 3, sm.max_row_length, 1, 4]
    rows = [golden.quantise_logits(rng.normal(0, 3, n), sm) for n in lengths]
    rows[2][:] = (1 << (sm.input_bits - 1)) - 1
    outs, cycles, _ = _simulate(cfg, rows)
    assert outs == _expected(cfg, rows)
    assert cycles == [c for t in timing.schedule_lengths(cfg, lengths)
                      for c in range(t.first_out, t.last_out + 1)]
