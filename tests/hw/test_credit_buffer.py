"""hw/credit_buffer.py in Amaranth's simulator: a fixed-latency pipeline that never stalls,
throttled only by the buffer's registered credit, under random back-pressure with long stalls
(nothing lost, duplicated or reordered: a write into a full FIFO would drop a beat) and at full rate with ``o`` always ready.

Run: ``python -m pytest tests/hw/test_credit_buffer.py -q``.
"""

from __future__ import annotations

import random

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.credit_buffer import CreditBuffer, full_rate_depth

WIDTH = 12


class DelayLine(wiring.Component):
    """Test top: a source offers ``value`` (``offer``); the beat enters a ``latency``-register
    pipeline that always advances when the buffer grants a credit, then the buffer."""

    def __init__(self, latency: int, depth: int):
        self.latency, self.depth = latency, depth
        super().__init__({"offer": In(1), "value": In(WIDTH), "taken": Out(1),
                          "o_valid": Out(1), "o_ready": In(1), "o_data": Out(WIDTH)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.buf = buf = CreditBuffer(WIDTH, self.depth)
        m.d.comb += [self.taken.eq(self.offer & buf.credit), buf.take.eq(self.taken)]
        valid, data = self.taken, self.value
        for s in range(self.latency):
            v, d = Signal(name=f"v{s}"), Signal(WIDTH, name=f"d{s}")
            m.d.sync += [v.eq(valid), d.eq(data)]
            valid, data = v, d
        m.d.comb += [buf.i.valid.eq(valid), buf.i.payload.eq(data),
                     self.o_valid.eq(buf.o.valid), self.o_data.eq(buf.o.payload),
                     buf.o.ready.eq(self.o_ready)]
        return m


def run(latency: int, depth: int, offer_p: float, ready_p: float, n: int, seed: int):
    """Push ``n`` beats through; return (received values, cycles, cycles with credit withheld)."""
    dut = DelayLine(latency, depth)
    rng = random.Random(seed)
    got: list[int] = []
    stats = {"cycles": 0, "withheld": 0}

    async def bench(ctx):
        sent = stall = 0
        while len(got) < n:
            offer = sent < n and rng.random() < offer_p
            ctx.set(dut.offer, offer)
            ctx.set(dut.value, sent)
            ready = stall == 0 and rng.random() < ready_p
            if stall:
                stall -= 1
            elif ready_p < 1 and rng.random() < 0.02:      # long stalls
                stall = rng.randint(20, 100)
            ctx.set(dut.o_ready, ready)
            await ctx.delay(1e-9)
            if offer and ctx.get(dut.taken):
                sent += 1
            elif offer:
                stats["withheld"] += 1
            if ctx.get(dut.o_valid) and ready:
                got.append(ctx.get(dut.o_data))
            await ctx.tick()
            stats["cycles"] += 1
            assert stats["cycles"] < 50 * n + 1000, "stuck"
        for _ in range(latency + 4):            # nothing extra afterwards
            ctx.set(dut.o_ready, 1)
            ctx.set(dut.offer, 0)
            await ctx.delay(1e-9)
            assert not ctx.get(dut.o_valid)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, stats["cycles"], stats["withheld"]


@pytest.mark.parametrize("latency,depth", [(0, 1), (0, 2), (3, 2), (8, full_rate_depth(8)),
                                           (5, 40)])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_backpressure_in_order(latency, depth, seed):
    got, _, _ = run(latency, depth, offer_p=0.8, ready_p=0.5, n=400, seed=seed)
    assert got == list(range(400))


@pytest.mark.parametrize("latency", [0, 1, 8, 11])
def test_full_rate_when_always_ready(latency):
    got, cycles, withheld = run(latency, full_rate_depth(latency), offer_p=1.0, ready_p=1.0,
                                n=300, seed=0)
    assert got == list(range(300)) and withheld == 0
    assert cycles == 300 + latency + 1           # one beat per cycle, latency + 1 to the first


def test_one_credit_short_is_not_full_rate():
    """``full_rate_depth`` is the smallest depth: one entry less withholds credits."""
    _, _, withheld = run(6, full_rate_depth(6) - 1, offer_p=1.0, ready_p=1.0, n=100, seed=0)
    assert withheld > 0
