"""hw/skid_buffer.py and hw/register_slice.py in Amaranth's simulator: the skid buffer passes the
stream at zero latency and ``i.ready`` never follows ``o.ready`` within a cycle; the register
slice adds exactly one cycle and its ``o`` never follows ``i`` within a cycle; under random
valid/ready with long stalls neither loses, duplicates or reorders anything.

Run: ``python -m pytest tests/hw/test_stream_stages.py -q``.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.register_slice import RegisterSlice
from hw.skid_buffer import SkidBuffer

WIDTH = 10


def run(valid_p: float, ready_p: float, n: int, seed: int,
        stage: type = SkidBuffer) -> tuple[list[int], list[tuple]]:
    """Send ``0..n-1`` through ``stage``; return what ``o`` delivered and a per-cycle trace
    (i.valid, i.ready, o.valid, o.ready)."""
    dut = stage(WIDTH)
    rng = random.Random(seed)
    got: list[int] = []
    trace: list[tuple] = []

    async def bench(ctx):
        sent = stall = 0
        while len(got) < n:
            ivalid = sent < n and rng.random() < valid_p
            if stall:
                stall -= 1
                oready = False
            else:
                oready = rng.random() < ready_p
                if ready_p < 1 and rng.random() < 0.02:
                    stall = rng.randint(20, 100)
            ctx.set(dut.i.valid, ivalid)
            ctx.set(dut.i.payload, sent)
            ctx.set(dut.o.ready, oready)
            await ctx.delay(1e-9)
            iready, ovalid = ctx.get(dut.i.ready), ctx.get(dut.o.valid)
            trace.append((ivalid, iready, ovalid, oready))
            if ivalid and iready:
                sent += 1
            if ovalid and oready:
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
            assert len(trace) < 60 * n + 1000, "stuck"
        ctx.set(dut.i.valid, 0)
        for _ in range(3):
            ctx.set(dut.o.ready, 1)
            await ctx.delay(1e-9)
            assert not ctx.get(dut.o.valid), "a beat appeared twice"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, trace


@pytest.mark.parametrize("stage", [SkidBuffer, RegisterSlice])
@pytest.mark.parametrize("seed", range(4))
def test_random_back_pressure_with_long_stalls_keeps_every_beat_in_order(seed, stage):
    got, trace = run(valid_p=0.7, ready_p=0.6, n=600, seed=seed, stage=stage)
    assert got == list(range(600))
    assert any(not r for _, r, _, _ in trace)       # back-pressure reached the input


def test_zero_latency_and_full_rate_when_never_stalled():
    got, trace = run(valid_p=1.0, ready_p=1.0, n=200, seed=0)
    assert got == list(range(200))
    assert len(trace) == 200                        # one beat per cycle from the first cycle
    assert all(iv == ov and ir for iv, ir, ov, _ in trace)


@pytest.mark.parametrize("stage, driven, watched, held", [
    (SkidBuffer, "o.ready", "i.ready", ("i.valid", 1)),
    (RegisterSlice, "i.valid", "o.valid", ("o.ready", 1)),
])
def test_registered_side_does_not_follow_within_a_cycle(stage, driven, watched, held):
    """The skid buffer's ``i.ready`` does not follow ``o.ready``, the register slice's ``o.valid``
    does not follow ``i.valid``, within a cycle: they change on clock edges only."""
    dut = stage(WIDTH)

    def port(path: str):
        side, name = path.split(".")
        return getattr(getattr(dut, side), name)

    async def bench(ctx):
        ctx.set(port(held[0]), held[1])
        for level in (1, 0, 1, 1, 0):
            ctx.set(port(driven), level)
            await ctx.delay(1e-9)
            before = ctx.get(port(watched))
            ctx.set(port(driven), 1 - level)
            await ctx.delay(1e-9)
            assert ctx.get(port(watched)) == before
            ctx.set(port(driven), level)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_register_slice_adds_one_cycle_at_full_rate():
    got, trace = run(valid_p=1.0, ready_p=1.0, n=200, seed=0, stage=RegisterSlice)
    assert got == list(range(200))
    assert len(trace) == 201                        # one beat per cycle, one cycle late
    assert not trace[0][2] and all(ov for _, _, ov, _ in trace[1:])
