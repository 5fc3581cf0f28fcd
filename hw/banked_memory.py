"""A memory read in four pipelined cycles, stored as depth banks of one block RAM each, so that a
block RAM's slow read data goes straight into a register and the bank multiplexer works between
registers, in two steps."""

from __future__ import annotations

from amaranth import Elaboratable, Module, Shape, Signal, Value
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.utils import ceil_log2

from hw.block_ram import DP16KD_MODES, BlockRam
from hw.select import select

#: enabled cycles from a read's address to its data: block-RAM read, bank word, the word picked
#: within each group of banks, the selected word
READ_STAGES = 4


def bank_depth(depth: int, width: int) -> int:
    """Words per bank: the DP16KD aspect ratio that stores ``depth`` words of ``width`` bits in
    the fewest block RAMs (fewer banks on a tie), capped at ``depth``."""
    def cost(mode: tuple[int, int]) -> tuple[int, int]:
        words, bits = mode
        banks = -(-depth // words)
        return banks * -(-width // bits), banks
    return min(min(DP16KD_MODES, key=cost)[0], depth)


class BankedMemory(Elaboratable):
    """``depth`` words of ``shape`` with one write port and one read port of
    :data:`READ_STAGES` stages.

    Timing: a read port's ``data`` is the word at the ``addr`` presented four enabled cycles
    earlier (``en`` high): stage 1 is the synchronous block-RAM read, stage 2 a register of the
    read word, stage 3 a register per group of banks holding the word of the bank read within
    the group, stage 4 a register of the selected word; every stage advances only while ``en``
    is high (a stall holds them all). One read per cycle. Reading the word written in the same
    cycle is undefined on the FPGA (no collision logic after the block RAMs: the weight buffer
    never reads the slot being written); simulation returns the old word.

    On a platform (a board build) the words are stored as :func:`bank_depth`-deep banks of
    consecutive addresses, each a :class:`hw.block_ram.BlockRam` one block RAM deep with two
    read stages (on ECP5 the second is the DP16KD's output register); stages 3 and 4 pick the
    word of the bank read, first within groups of about ``sqrt(banks)`` banks (a register per
    group, which can sit by its block RAMs), then the group. Why: Yosys cascades a deep
    memory's block RAMs with a multiplexer after their read data (5.8 ns of unregistered
    clock-to-output on ECP5), e.g. the 4608-word weight buffer nine RAMs deep; here the bank
    multiplexer works between registers. The same 36 DP16KD for that memory. (With the nine
    banks' 9:1 multiplexer in one stage, a block RAM placed across the die from it makes a
    ~10 ns routed path.) Without a platform (Verilog for simulation) it is one memory and
    two output registers with the same behaviour (``banked=True`` forces the banks).
    """

    def __init__(self, *, shape, depth: int, banked: bool | None = None):
        self.shape, self.depth, self.banked = shape, depth, banked
        self.width = Shape.cast(shape).width
        self.bank_depth = bank_depth(depth, self.width)
        self._read_port = ReadPort.Signature(addr_width=ceil_log2(depth), shape=shape).create()
        self._write_port = WritePort.Signature(addr_width=ceil_log2(depth), shape=shape).create()

    def read_port(self) -> ReadPort:
        """The :data:`READ_STAGES`-stage read port (``addr``, ``en`` in; ``data`` out)."""
        return self._read_port

    def write_port(self) -> WritePort:
        """The ``sync`` write port, whole words."""
        return self._write_port

    def elaborate(self, platform) -> Module:
        m = Module()
        rd, wr = self._read_port, self._write_port
        banked = platform is not None if self.banked is None else self.banked
        per_bank = self.bank_depth if banked else self.depth
        banks = -(-self.depth // per_bank)
        bank_bits = ceil_log2(per_bank)
        words = []
        for b in range(banks):
            # read-during-write of one word is never asked for (see the class docstring)
            ram = BlockRam(width=self.width, depth=min(per_bank, self.depth - b * per_bank),
                           read_stages=2)
            m.submodules[f"bank{b}"] = ram
            hit = wr.addr[bank_bits:] == b if banks > 1 else 1
            m.d.comb += [ram.write.addr.eq(wr.addr[:bank_bits]), ram.write.data.eq(wr.data),
                         ram.write.en.eq(wr.en & hit),
                         ram.read.addr.eq(rd.addr[:bank_bits]), ram.read.en.eq(rd.en)]
            words.append(ram.read.data)
        # data and bank numbers: no reset (the reader's valid bits are its control)
        in_group = (ceil_log2(banks) + 1) // 2          # bank bits resolved by the group registers
        group = 1 << in_group
        groups = -(-banks // group)
        bank1, bank2 = (Signal(range(banks), name=n, reset_less=True) for n in ("bank1", "bank2"))
        group3 = Signal(range(groups), name="group3", reset_less=True)
        picks = [Signal(self.width, name=f"pick{g}", reset_less=True) for g in range(groups)]
        data = Signal(self.width, name="data", reset_less=True)
        m.d.comb += Value.cast(rd.data).eq(data)
        with m.If(rd.en):
            m.d.sync += [bank1.eq(rd.addr[bank_bits:] if banks > 1 else 0), bank2.eq(bank1),
                         group3.eq(bank2 >> in_group), data.eq(select(picks, group3))]
            for g, pick in enumerate(picks):
                m.d.sync += pick.eq(select(words[g * group:(g + 1) * group], bank2[:in_group]))
        return m

