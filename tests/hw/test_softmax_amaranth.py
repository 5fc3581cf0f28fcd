"""hw/softmax.py in Amaranth's Python simulator: a fast bit-exact and cycle-exact sanity check.

The thorough, stressed checks run on Verilator in ``tests/hw/test_softmax.py``; this one needs no
build and catches most regressions in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import softmax as golden
from hw.softmax import Softmax
from moeaccel import config
from sim.timing import softmax as timing


def _simulate(cfg, rows: list[np.ndarray], out_ready=None) -> tuple[list[dict], list[int], int]:
    """Stream ``rows`` in (input always valid), collect outputs; returns (outputs, cycle of each
    output handshake, cycle of the first input handshake)."""
    dut = Softmax(cfg)
    beats = [(int(x), j == len(r) - 1) for r in rows for j, x in enumerate(r)]
    total = len(beats)
    outputs: list[dict] = []
    out_cycles: list[int] = []
    first_in: list[int] = []

    async def bench(ctx):
        cycle, k = 0, 0
        while len(outputs) < total:
            if k < total:
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"logit": beats[k][0], "last": beats[k][1]})
            else:
                ctx.set(dut.i.valid, 0)
            ready = 1 if out_ready is None else out_ready(cycle)
            ctx.set(dut.o.ready, ready)
            await ctx.delay(1e-9)
            if k < total and ctx.get(dut.i.ready):
                if k == 0:
                    first_in.append(cycle)
                k += 1
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
    pattern = rng.random(4000) < 0.6
    outs, _, _ = _simulate(cfg, rows, out_ready=lambda c: int(pattern[c % len(pattern)]))
    assert outs == _expected(cfg, rows)


@pytest.mark.parametrize("overrides", [
    {"hardware.softmax.divider_bits_per_cycle": 1},
    {"hardware.softmax.divider_bits_per_cycle": 3, "hardware.softmax.exp_table_entries": 32},
    {"hardware.softmax.exp_frac_bits": 18, "hardware.softmax.sum_frac_bits": 16},
    {"hardware.softmax.input_bits": 8, "hardware.softmax.input_frac_bits": 0,
     "hardware.softmax.max_row_length": 5, "hardware.softmax.prob_frac_bits": 8},
], ids=["div1", "div3-table32", "ef18-sf16", "int8-short-rows"])
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
