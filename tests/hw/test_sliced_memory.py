"""hw/sliced_memory.py in Amaranth's simulator: sliced or whole, with or without defined
collisions, two read ports return what was written (one cycle after the address), and slicing
really splits the storage (Yosys maps each slice onto one block RAM)."""

from __future__ import annotations

import random

import pytest
from amaranth import Module
from amaranth.back import rtlil
from amaranth.sim import Simulator

from hw.sliced_memory import SlicedMemory, block_ram_slice_bits
from tests.hw.memory_bench import check_pipelined_reads

WIDTH, DEPTH = 40, 300


def test_slice_width_is_the_widest_block_ram_mode_holding_every_word():
    assert [block_ram_slice_bits(d) for d in (512, 513, 1024, 2048, 3096, 8192, 20000)] == \
        [36, 18, 18, 9, 4, 2, 1]


@pytest.mark.parametrize("collisions_undefined", [False, True])
@pytest.mark.parametrize("sliced", [False, True])
def test_reads_return_the_written_words(sliced, collisions_undefined):
    mem = SlicedMemory(shape=WIDTH, depth=DEPTH, slice_bits=9, sliced=sliced,
                       collisions_undefined=collisions_undefined)
    wp, reads = mem.write_port(), [mem.read_port(), mem.read_port()]
    m = Module()
    m.submodules.mem = mem
    rng = random.Random(int(sliced) * 2 + int(collisions_undefined))
    model: dict[int, int] = {}

    async def bench(ctx):
        for _ in range(1500):
            waddr = rng.randrange(DEPTH)
            wdata = rng.getrandbits(WIDTH)
            write = rng.random() < 0.5
            # reads never hit the word written in the same cycle (the gather's contract)
            raddrs = [rng.choice([a for a in model if a != waddr] or [None]) for _ in reads]
            ctx.set(wp.addr, waddr)
            ctx.set(wp.data, wdata)
            ctx.set(wp.en, write)
            for port, a in zip(reads, raddrs):
                ctx.set(port.addr, a or 0)
                ctx.set(port.en, a is not None)
            await ctx.tick()
            for port, a in zip(reads, raddrs):
                if a is not None:
                    assert ctx.get(port.data) == model[a]
            if write:
                model[waddr] = wdata

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("sliced, memories", [(False, 1), (True, 5)])
def test_storage_is_split_only_when_sliced(sliced, memories):
    mem = SlicedMemory(shape=WIDTH, depth=DEPTH, slice_bits=9, sliced=sliced)
    port = mem.read_port()
    m = Module()
    m.submodules.mem = mem
    il = rtlil.convert(m, ports=[port.addr, port.en, port.data])
    assert il.count("cell $meminit_v2 ") == memories      # one init cell per memory


@pytest.mark.parametrize("sliced", [False, True])
def test_two_read_stages_return_the_word_two_enabled_cycles_later(sliced):
    mem = SlicedMemory(shape=WIDTH, depth=DEPTH, slice_bits=9, sliced=sliced,
                       collisions_undefined=True, read_stages=2)
    check_pipelined_reads(mem, mem.write_port(), mem.read_port(), width=WIDTH, depth=DEPTH,
                          stages=2, seed=7 + sliced, cycles=2000)
