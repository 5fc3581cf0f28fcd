"""hw/requantise.py in Amaranth's simulator against :func:`golden.fixed.requantise`: every lane
of every beat bit-exact, extremes included (the accumulator's limits, multiplier 0 and its
largest value, shift 0 and the largest shift, narrow and wide output formats, saturation both
ways), a narrower ``acc_bits`` input (the fused activation's), and each beat out
``REQUANT_STAGES`` cycles after it went in."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.fixed import requantise
from hw.compute_unit_layouts import out_bits
from hw.requantise import Requantiser
from moeaccel import config
from sim.timing.compute_unit import REQUANT_STAGES

LANES, BEATS = 4, 400


@pytest.mark.parametrize("preset, narrow", [("ulx3s", False), ("ulx3s", True), ("tiny", False)])
def test_requantiser_matches_golden(preset, narrow):
    cfg = config.load(preset)
    cu = cfg.hardware.compute_unit
    acc_bits = out_bits(cfg) if narrow else cu.accumulator_bits
    dut = Requantiser(cfg, lanes=LANES, acc_bits=acc_bits)
    rng = random.Random(f"{preset}{narrow}")
    big, mult_max = 1 << (acc_bits - 1), (1 << cu.requant_multiplier_bits) - 1

    def beat():
        accs = [rng.choice([-big, big - 1, 0, rng.randrange(-big, big), rng.randrange(-300, 300)])
                for _ in range(LANES)]
        mult = rng.choice([0, 1, mult_max, rng.randrange(mult_max + 1)])
        shift = rng.choice([0, 1, cu.requant_max_shift, rng.randrange(cu.requant_max_shift + 1)])
        return accs, mult, shift, rng.randrange(2)

    beats = [beat() for _ in range(BEATS)]
    got: list[tuple[int, list[int]]] = []     # (cycle, lanes) of every output beat

    async def bench(ctx):
        for cycle, b in enumerate(beats + [None] * (REQUANT_STAGES + 2)):
            ctx.set(dut.i.valid, b is not None)
            if b is not None:
                accs, mult, shift, wide = b
                for c in range(LANES):
                    ctx.set(dut.i.p.acc[c], accs[c])
                ctx.set(dut.i.p.multiplier, mult)
                ctx.set(dut.i.p.shift, shift)
                ctx.set(dut.i.p.wide, wide)
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append((cycle, [ctx.get(dut.o.p.data[c]) for c in range(LANES)]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [cycle for cycle, _ in got] == [i + REQUANT_STAGES - 1 for i in range(BEATS)]
    for (accs, mult, shift, wide), (_, lanes) in zip(beats, got):
        bits = out_bits(cfg) if wide else cu.operand_bits
        want = requantise(np.array(accs, dtype=object), mult, shift, bits, cu.rounding)
        assert lanes == [int(v) for v in want], (accs, mult, shift, wide)
