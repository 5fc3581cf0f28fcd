"""hw/logit_serialiser.py in Amaranth's simulator: router GEMM rows in, one logit per beat out,
under random back-pressure on both streams (nothing lost, duplicated or reordered), with the
cycle of every row's first logit checked against :mod:`sim.timing.logit_serialiser` (a row is
taken when offered and the previous row's last logit has been accepted, its first logit offered
``LATENCY`` later), and ``idle`` checked every cycle.

Run: ``python -m pytest tests/hw/test_logit_serialiser.py -q``.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from golden.fixed import smax, smin
from hw.compute_unit_layouts import out_bits
from hw.logit_serialiser import LogitSerialiser
from moeaccel import config
from sim.timing import logit_serialiser as timing


def run(cfg, rows: list[list[int]], offer_p: float, ready_p: float, seed: int):
    """Feed ``rows`` (a source that keeps a row offered until taken); return the logits
    received as ``(row, lane, value, last)``, and per row the cycle the source first offered
    it, the cycle its first logit was first offered and the cycle its last logit was taken."""
    dut = LogitSerialiser(cfg)
    r, cols = cfg.model.router_outputs, cfg.hardware.compute_unit.cols
    rng = random.Random(seed)
    got: list[tuple[int, int, int, int]] = []
    first_offer, first_logit, last_taken = [], [], []

    async def bench(ctx):
        sent, cycle, lane, offering = 0, 0, 0, False
        while len(got) < len(rows) * r:
            if not offering and sent < len(rows) and rng.random() < offer_p:
                offering = True
                first_offer.append(cycle)
                for c in range(cols):
                    ctx.set(dut.i.p.data[c], rows[sent][c])
                ctx.set(dut.i.p.row, sent)
            ctx.set(dut.i.valid, offering)
            ready = rng.random() < ready_p
            ctx.set(dut.o.ready, ready)
            await ctx.delay(1e-9)
            row = len(got) // r
            if ctx.get(dut.o.valid) and lane == 0 and len(first_logit) == row:
                first_logit.append(cycle)
            # idle: no row held (none offered to the router)
            assert ctx.get(dut.idle) == (not ctx.get(dut.o.valid))
            if offering and ctx.get(dut.i.ready):
                offering, sent = False, sent + 1
            if ctx.get(dut.o.valid) and ready:
                got.append((row, lane, ctx.get(dut.o.p.logit), ctx.get(dut.o.p.last)))
                lane = (lane + 1) % r
                if lane == 0:
                    last_taken.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < 50 * len(rows) * r + 1000, "stuck"
        for _ in range(4):                      # nothing extra afterwards
            ctx.set(dut.i.valid, 0)
            await ctx.delay(1e-9)
            assert not ctx.get(dut.o.valid) and ctx.get(dut.idle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, first_offer, first_logit, last_taken


def random_rows(cfg, n: int, rng: random.Random) -> list[list[int]]:
    bits, cols = out_bits(cfg), cfg.hardware.compute_unit.cols
    extremes = [smin(bits), smax(bits), 0, -1]
    return [[rng.choice(extremes) if rng.random() < 0.3 else rng.randint(smin(bits), smax(bits))
             for _ in range(cols)] for _ in range(n)]


@pytest.mark.parametrize("preset,experts", [("ulx3s", None), ("tiny", None), ("tiny", 1)])
@pytest.mark.parametrize("offer_p,ready_p", [(1.0, 1.0), (0.7, 0.5), (1.0, 0.2), (0.3, 1.0)])
def test_logits_in_order_at_the_modelled_cycles(preset, experts, offer_p, ready_p):
    cfg = config.load(preset)
    if experts is not None:
        cfg = cfg.replace({"model.experts": experts, "model.top_k": 1})
    r = cfg.model.router_outputs
    rows = random_rows(cfg, 60, random.Random(7))
    got, first_offer, first_logit, last_taken = run(cfg, rows, offer_p, ready_p, seed=3)
    assert got == [(j, c, rows[j][c], int(c == r - 1)) for j in range(len(rows))
                   for c in range(r)]
    offer = timing.offer(first_offer)
    for j in range(len(rows)):
        previous = last_taken[j - 1] if j else -1
        assert first_logit[j] == offer(j, previous), f"row {j}"
