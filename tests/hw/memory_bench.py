"""A bench for memories with pipelined reads, in Amaranth's simulator: random writes and random
reads (``en`` low 30% of the cycles, stalling every read stage), each read word checked
``stages`` enabled cycles after its address against a model (old data on a collision)."""

from __future__ import annotations

import random

from amaranth import Elaboratable, Module
from amaranth.sim import Simulator


def check_pipelined_reads(memory: Elaboratable, write, read, *, width: int, depth: int,
                          stages: int, seed: int, cycles: int = 3000) -> None:
    """Drive ``write`` (``addr``, ``data``, ``en``) and ``read`` (``addr``, ``en``, ``data``) of
    ``memory``; fail on the first read word that differs from the model."""
    m = Module()
    m.submodules.memory = memory
    rng = random.Random(seed)
    model: dict[int, int] = {}

    async def bench(ctx):
        in_flight: list[int | None] = [None] * stages       # the words in the read stages
        for cycle in range(cycles):
            waddr, wdata = rng.randrange(depth), rng.getrandbits(width)
            write_now = rng.random() < 0.5 or cycle < cycles // 3
            raddr, en = rng.randrange(depth), rng.random() < 0.7
            for port, value in ((write.addr, waddr), (write.data, wdata), (write.en, write_now),
                                (read.addr, raddr), (read.en, en)):
                ctx.set(port, value)
            if en:      # the word read now is the one before this cycle's write (old data)
                in_flight = [model.get(raddr)] + in_flight[:-1]
            await ctx.tick()
            if write_now:
                model[waddr] = wdata
            if in_flight[-1] is not None:
                assert ctx.get(read.data) == in_flight[-1], f"cycle {cycle}"

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
