"""hw/block_ram.py: the DP16KD instances BlockRam makes for ECP5 are wired as Yosys wires the block
RAM it infers for the same memory (every address and data pin, per aspect ratio), the second read
stage is the RAM's output register, and the simulation model reads in one or two stages."""

from __future__ import annotations

import pytest
from amaranth import Module, Signal, unsigned
from amaranth.back import rtlil
from amaranth.lib.memory import Memory

from fpga.boards.ulx3s import platform
from hw.block_ram import NO_COLLISION_LOGIC, BlockRam, dp16kd_mode, registered_read
from tests.fpga.hard_block_wiring import hard_block_wiring
from tests.hw.memory_bench import check_pipelined_reads

#: one memory per DP16KD aspect ratio that the engine uses or could (words x bits)
MODES = [(512, 36), (1024, 18), (2048, 9), (4096, 4)]
DATA_PINS = ("DI", "DO", "AD")


def _top(width: int, depth: int, ours: bool, read_stages: int = 1) -> str:
    """RTLIL of a memory between named top-level ports: BlockRam (ECP5), or an inferred one."""
    m = Module()
    abits = max(1, (depth - 1).bit_length())
    waddr, raddr = Signal(abits, name="waddr"), Signal(abits, name="raddr")
    wdata, rdata = Signal(width, name="wdata"), Signal(width, name="rdata")
    wen, ren = Signal(name="wen"), Signal(name="ren")
    if ours:
        m.submodules.ram = ram = BlockRam(width=width, depth=depth, read_stages=read_stages)
        m.d.comb += [ram.write.addr.eq(waddr), ram.write.data.eq(wdata), ram.write.en.eq(wen),
                     ram.read.addr.eq(raddr), ram.read.en.eq(ren), rdata.eq(ram.read.data)]
    else:
        m.submodules.mem = mem = Memory(shape=unsigned(width), depth=depth, init=[],
                                        attrs=NO_COLLISION_LOGIC)
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(waddr), wp.data.eq(wdata), wp.en.eq(wen),
                     rdata.eq(registered_read(m, mem, raddr, ren, "held"))]
    return rtlil.convert(m, ports=[waddr, raddr, wdata, rdata, wen, ren],
                         platform=platform() if ours else None)


def _dp16kd_wiring(il: str, work) -> tuple[dict[str, set[str]], list[dict]]:
    """Per top-level port bit, the DP16KD address/data pins on it; each DP16KD's parameters."""
    return hard_block_wiring(il, work, "DP16KD", DATA_PINS)


@pytest.mark.parametrize("depth, bits", MODES)
def test_dp16kd_pins_as_yosys_wires_them(depth, bits, tmp_path):
    width = 2 * bits + 3          # three RAMs side by side, the last one partly used
    (tmp_path / "inferred").mkdir()
    (tmp_path / "ours").mkdir()
    inferred, _ = _dp16kd_wiring(_top(width, depth, ours=False), tmp_path / "inferred")
    ours, params = _dp16kd_wiring(_top(width, depth, ours=True), tmp_path / "ours")
    assert len(params) == 3 and ours
    assert ours == inferred
    assert {int(p["DATA_WIDTH_B"], 2) for p in params} == {bits}


def test_second_read_stage_is_the_output_register(tmp_path):
    _, two = _dp16kd_wiring(_top(36, 512, ours=True, read_stages=2), tmp_path)
    assert [p["REGMODE_B"] for p in two] == ["OUTREG"]
    (tmp_path / "one").mkdir()
    _, one = _dp16kd_wiring(_top(36, 512, ours=True, read_stages=1), tmp_path / "one")
    assert [p["REGMODE_B"] for p in one] == ["NOREG"]


def test_mode_is_the_widest_holding_every_word():
    assert [dp16kd_mode(d) for d in (100, 512, 513, 4096, 16384)] == \
        [(512, 36), (512, 36), (1024, 18), (4096, 4), (16384, 1)]
    with pytest.raises(ValueError, match="16385 words"):
        dp16kd_mode(16385)


@pytest.mark.parametrize("read_stages", [1, 2])
def test_simulation_reads_after_its_stages(read_stages):
    ram = BlockRam(width=20, depth=300, read_stages=read_stages)
    check_pipelined_reads(ram, ram.write, ram.read, width=20, depth=300, stages=read_stages,
                          seed=read_stages)
