"""hw/weight_stream.py's replay (``_Replay``) in Amaranth's simulator, with a memory of 1 to 3
enabled read stages emulated by the bench: random commands (``count`` 1.., ``repeats`` 1..)
back to back, random back-pressure with long stalls, every cycle's ``o.valid``, payload,
``done``, ``busy`` and the memory's read enable checked against the contract: the read stages
advance while ``o`` is empty or taken, and a read enters them in every such cycle a position
is left (``sim.timing.weight_stream``: a beat ``read_stages`` cycles after its read).

Run: ``python -m pytest tests/hw/test_weight_stream_replay.py -q``.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.weight_stream import _Replay

DEPTH, WIDTH = 64, 16


class ContractModel:
    """The replay as its timing contract states it: positions ``base .. base+count-1``,
    ``repeats`` times, read into ``stages`` registers that all advance together."""

    def __init__(self, stages: int):
        self.left: list[tuple[int, bool]] = []       # (address, final) still to read
        self.pipe = [(False, 0, False)] * stages      # (valid, address, final), output last

    def busy(self) -> bool:
        return bool(self.left)

    def out(self) -> tuple[bool, int, bool]:
        return self.pipe[-1]

    def step(self, start, ready: bool):
        valid = self.pipe[-1][0]
        advance = not valid or ready
        if advance:
            read = (True, *self.left.pop(0)) if self.left else (False, 0, False)
            self.pipe = [read] + self.pipe[:-1]
        if start is not None:
            base, count, repeats = start
            seq = [base + i for _ in range(repeats) for i in range(count)]
            self.left = [(a, n == len(seq) - 1) for n, a in enumerate(seq)]
        return advance


@pytest.mark.parametrize("stages", [1, 2, 3])
@pytest.mark.parametrize("ready_p", [1.0, 0.6])
def test_replay_matches_contract(stages: int, ready_p: float):
    dut = _Replay(WIDTH, DEPTH, range(DEPTH + 1), range(8), read_stages=stages)
    rng = random.Random(stages * 10 + int(ready_p * 10))
    memory = [rng.randrange(1 << WIDTH) for _ in range(DEPTH)]
    model = ContractModel(stages)

    async def bench(ctx):
        mem_pipe = [0] * stages                 # the emulated memory's read stages (addresses)
        commands, stall, beats, expected = 60, 0, 0, 0
        for cycle in range(6000):
            ctx.set(dut.rd_data, memory[mem_pipe[-1]])
            start = None
            if commands and not model.busy() and rng.random() < 0.5:
                base = rng.randrange(DEPTH)
                start = (base, rng.randint(1, min(6, DEPTH - base)), rng.randint(1, 4))
                commands -= 1
                expected += start[1] * start[2]
            ctx.set(dut.start, start is not None)
            if start:
                ctx.set(dut.base, start[0])
                ctx.set(dut.count, start[1])
                ctx.set(dut.repeats, start[2])
                ctx.set(dut.repeats_one, start[2] == 1)
                ctx.set(dut.repeats_two, start[2] == 2)
            if stall:
                stall, ready = stall - 1, False
            else:
                ready = rng.random() < ready_p
                if ready_p < 1 and rng.random() < 0.02:
                    stall = rng.randint(5, 30)
            ctx.set(dut.o.ready, ready)
            await ctx.delay(1e-9)
            valid, addr, final = model.out()
            assert ctx.get(dut.busy) == model.busy(), cycle
            assert ctx.get(dut.o.valid) == valid, cycle
            if valid:
                assert ctx.get(dut.o.p) == memory[addr], cycle
                beats += ready
            assert ctx.get(dut.done) == (valid and ready and final), cycle
            advance = model.step(start, ready)
            assert ctx.get(dut.rd_en) == advance, cycle
            if advance:
                mem_pipe = [ctx.get(dut.rd_addr)] + mem_pipe[:-1]
            await ctx.tick()
        assert commands == 0 and not model.busy() and beats == expected

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
