"""Block RAMs: reading one without Yosys' collision logic, and one RAM deep with the ECP5 DP16KD's
output register as a second read stage.

An Amaranth synchronous read port promises the old word when the same word is written in the
same cycle. ECP5 block RAMs do not, so Yosys emulates the promise: every write is delayed a
cycle in registers and compared with the read address, and a multiplexer after the RAM picks the
delayed word on a hit. That multiplexer sits right after the RAM's slow unregistered read data
(5.8 ns clock-to-output on ECP5). A memory whose owner never reads a word in the cycle it is
written can drop the emulation: :data:`NO_COLLISION_LOGIC` on the memory, and the read made with
:func:`registered_read`.
"""

from __future__ import annotations

from amaranth import ClockSignal, Elaboratable, Instance, Module, Signal, Value, unsigned
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.utils import ceil_log2, exact_log2

#: ECP5 DP16KD (18 kbit) aspect ratios, depth -> data bits, shallowest first. The 9/18/36-bit
#: modes include the parity bits, which Yosys uses as data; 36 bits is the simple dual-port mode.
DP16KD_MODES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
#: DP16KD address pins (bit addresses: a mode of ``words`` words uses ADx13 down to ADx(14 - log2))
DP16KD_ADDRESS_BITS = 14

#: memory attributes: a read of the word being written is undefined on the FPGA (Yosys)
NO_COLLISION_LOGIC = {"no_rw_check": 1}


def registered_read(m: Module, memory: Memory, addr: Value, en: Value, name: str) -> Signal:
    """The word at ``addr`` one cycle after a cycle with ``en`` high (held while ``en`` is low):
    a synchronous read port's behaviour, built as an asynchronous read and a register, which is
    the form Yosys applies ``no_rw_check`` to when it folds the register into the block RAM.
    Simulation returns the old word on a collision, as a synchronous port does."""
    port = memory.read_port(domain="comb")
    held = Signal(port.data.shape(), name=name, reset_less=True)
    m.d.comb += port.addr.eq(addr)
    with m.If(en):
        m.d.sync += held.eq(port.data)
    return held


def dp16kd_mode(depth: int) -> tuple[int, int]:
    """The widest DP16KD mode ``(words, bits)`` holding ``depth`` words in one RAM."""
    mode = next((mode for mode in DP16KD_MODES if depth <= mode[0]), None)
    if mode is None:
        raise ValueError(f"{depth} words do not fit one DP16KD (at most {DP16KD_MODES[-1][0]})")
    return mode


def is_ecp5(platform) -> bool:
    """Whether ``platform`` builds for a Lattice ECP5 (whose block RAM is the DP16KD)."""
    return getattr(platform, "family", None) == "ecp5"


class BlockRam(Elaboratable):
    """``depth`` words of ``width`` bits, one block RAM deep, with a write port (``write``:
    ``addr``, ``data``, ``en``) and a read port (``read``: ``addr``, ``en``, ``data``) whose
    ``data`` is the word at the ``addr`` of ``read_stages`` (1 or 2) enabled cycles earlier;
    every read stage holds while ``en`` is low. Reading the word written in the same cycle is
    undefined on the FPGA (no collision logic); simulation returns the old word.

    On an ECP5 platform the words are DP16KDs side by side, instantiated directly in the mode
    of :func:`dp16kd_mode` (port A writes, port B reads; 36-bit words in the simple dual-port
    mode), because only then can the second read stage be the RAM's own output register
    (``REGMODE = OUTREG``): Yosys never infers it, and nextpnr times a DP16KD's read data at
    0.96 ns after the clock with it instead of 5.83 ns without. Elsewhere (simulation, other
    vendors) it is a :class:`~amaranth.lib.memory.Memory` read by :func:`registered_read`,
    plus a register for the second stage.
    """

    def __init__(self, *, width: int, depth: int, read_stages: int = 1):
        if read_stages not in (1, 2):
            raise ValueError(f"read_stages must be 1 or 2, not {read_stages}")
        self.width, self.depth, self.read_stages = width, depth, read_stages
        addr_width = ceil_log2(depth)
        self.write = WritePort.Signature(addr_width=addr_width, shape=unsigned(width)).create()
        self.read = ReadPort.Signature(addr_width=addr_width, shape=unsigned(width)).create()

    def elaborate(self, platform) -> Module:
        m = Module()
        if is_ecp5(platform) and self.depth <= DP16KD_MODES[-1][0]:
            self._dp16kds(m)
            return m
        m.submodules.memory = memory = Memory(shape=unsigned(self.width), depth=self.depth,
                                              init=[], attrs=NO_COLLISION_LOGIC)
        wp = memory.write_port()
        m.d.comb += [wp.addr.eq(self.write.addr), wp.data.eq(self.write.data),
                     wp.en.eq(self.write.en)]
        data = registered_read(m, memory, self.read.addr, self.read.en, "read1")
        if self.read_stages == 2:
            second = Signal(unsigned(self.width), name="read2", reset_less=True)
            with m.If(self.read.en):
                m.d.sync += second.eq(data)
            data = second
        m.d.comb += self.read.data.eq(data)
        return m

    def _dp16kds(self, m: Module) -> None:
        words, bits = dp16kd_mode(self.depth)
        word_bits = exact_log2(words)
        lsb = DP16KD_ADDRESS_BITS - word_bits         # bit-address pins below the word address
        regmode = "OUTREG" if self.read_stages == 2 else "NOREG"
        wr, rd = self.write, self.read
        if bits == 36:      # simple dual-port: byte enables on ADA3..0, a word on both buses
            write_low, wea = [wr.en] * 4 + [0] * (lsb - 4), 1
        else:               # at 18 bits, ADA1..0 are the byte enables
            write_low = ([wr.en] * 2 if bits == 18 else []) + [0] * (lsb - (bits == 18) * 2)
            wea = wr.en

        def address(port: str, addr: Value, low: list) -> dict[str, Value]:
            pins = low + [addr[i] if i < len(addr) else 0 for i in range(word_bits)]
            return {f"i_AD{port}{i}": pin for i, pin in enumerate(pins)}

        for i, low in enumerate(range(0, self.width, bits)):
            high = min(low + bits, self.width)
            din, dout = Signal(bits, name=f"din{i}"), Signal(bits, name=f"dout{i}")
            m.d.comb += [din.eq(wr.data[low:high]), rd.data[low:high].eq(dout[:high - low])]
            # 36 bits: the low 18 on the A buses, the high 18 on the B buses; else B reads
            data_in = {"A": din[:18], "B": din[18:]} if bits == 36 else {"A": din, "B": None}
            data_out = {"A": dout[:18], "B": dout[18:]} if bits == 36 else {"A": None, "B": dout}
            ports: dict[str, object] = {
                "p_DATA_WIDTH_A": bits, "p_DATA_WIDTH_B": bits,
                "p_REGMODE_A": regmode if bits == 36 else "NOREG", "p_REGMODE_B": regmode,
                "p_RESETMODE": "SYNC", "p_CSDECODE_A": "0b000", "p_CSDECODE_B": "0b000",
                "p_WRITEMODE_A": "NORMAL", "p_WRITEMODE_B": "NORMAL", "p_GSR": "DISABLED",
                "i_CLKA": ClockSignal("sync"), "i_CLKB": ClockSignal("sync"),
                "i_CEA": 1, "i_OCEA": rd.en if bits == 36 else 1, "i_WEA": wea, "i_RSTA": 0,
                "i_CEB": rd.en, "i_OCEB": rd.en, "i_WEB": 0, "i_RSTB": 0,
                **{f"i_CS{p}{j}": 0 for p in "AB" for j in range(3)},
                **address("A", wr.addr, write_low), **address("B", rd.addr, [0] * lsb),
            }
            for p in "AB":
                din_p, dout_p = data_in[p], data_out[p]
                for j in range(18):
                    ports[f"i_DI{p}{j}"] = din_p[j] if din_p is not None and j < len(din_p) else 0
                    ports[f"o_DO{p}{j}"] = (dout_p[j] if dout_p is not None and j < len(dout_p)
                                            else Signal(name=f"ram{i}_unused_do{p.lower()}{j}"))
            m.submodules[f"ram{i}"] = Instance("DP16KD", **ports)
