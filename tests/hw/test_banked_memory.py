"""hw/banked_memory.py in Amaranth's simulator: banked or whole, a read returns the word at the
address given READ_STAGES (4) enabled cycles earlier, stalls (``en`` low) hold every read stage,
and banking really splits the storage into block-RAM-deep banks."""

from __future__ import annotations

import pytest
from amaranth import Module
from amaranth.back import rtlil

from hw.banked_memory import READ_STAGES, BankedMemory, bank_depth
from tests.hw.memory_bench import check_pipelined_reads

WIDTH, DEPTH = 36, 1300


def test_bank_depth_needs_fewest_block_rams():
    # the weight buffer's 4608 x 128-bit words: 9 banks of 512 x 36-bit RAMs (36), not 64 x 2-bit
    assert bank_depth(4608, 128) == 512
    assert bank_depth(4096, 4) == 4096          # one 4096 x 4 RAM
    assert bank_depth(100, 128) == 100          # one shallow bank
    assert bank_depth(1300, 36) == 512          # 3 x (512 x 36) beats 4 x (1024 x 18)
    assert bank_depth(1300, 18) == 1300         # 2 x (2048 x 9) in one bank beats 2 banks


@pytest.mark.parametrize("banked, depth", [(False, DEPTH), (True, DEPTH), (True, 4608)])
def test_reads_return_the_word_read_stages_enabled_cycles_later(banked, depth):
    # banked 1300 words: 3 banks, picked in groups of 2 then 1; 4608: the weight buffer's 9
    # banks, in groups of 4, 4 and 1
    mem = BankedMemory(shape=WIDTH, depth=depth, banked=banked)
    check_pipelined_reads(mem, mem.write_port(), mem.read_port(), width=WIDTH, depth=depth,
                          stages=READ_STAGES, seed=int(banked), cycles=4000)


@pytest.mark.parametrize("banked, memories", [(False, 1), (True, 3)])
def test_storage_is_split_only_when_banked(banked, memories):
    mem = BankedMemory(shape=WIDTH, depth=DEPTH, banked=banked)     # 512-deep banks: 3
    port = mem.read_port()
    m = Module()
    m.submodules.mem = mem
    il = rtlil.convert(m, ports=[port.addr, port.en, port.data])
    assert il.count("cell $meminit_v2 ") == memories
