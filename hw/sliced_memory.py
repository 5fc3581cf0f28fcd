"""A wide memory stored as bit slices, each no wider than one block RAM holding every word, so
that synthesis never cascades block RAMs in depth (no multiplexer after the RAMs' outputs)."""

from __future__ import annotations

from amaranth import Elaboratable, Module, Shape, Signal, Value, unsigned
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.utils import ceil_log2

from hw.block_ram import DP16KD_MODES, NO_COLLISION_LOGIC, BlockRam, registered_read


def block_ram_slice_bits(depth: int) -> int:
    """The widest DP16KD data width whose depth holds ``depth`` words in one RAM (1 past 16384
    words, where a depth cascade is unavoidable)."""
    return next((bits for words, bits in DP16KD_MODES if depth <= words), 1)


class SlicedMemory(Elaboratable):
    """``depth`` words of ``shape``, stored as ``ceil(width / slice_bits)`` memories of the same
    depth, slice ``i`` holding bits ``[i * slice_bits, (i + 1) * slice_bits)`` of every word.

    Behaves as one :class:`amaranth.lib.memory.Memory` with synchronous, non-transparent read
    ports (data ``read_stages`` enabled cycles after ``addr``/``en``) and write ports without granularity: every
    slice sees each port's address and enable, and a port's data is its slices' data side by
    side. Why: Yosys maps a memory onto block RAMs in the aspect that needs the fewest of them,
    e.g. 3096 words of 128 bits as 512x36 DP16KDs seven deep with an 8:1 multiplexer after the
    RAMs' (slow, unregistered) read data. With :func:`block_ram_slice_bits` slices, each slice is
    one RAM deep (4096x4 DP16KDs for that memory: 32 instead of 27), so the read data goes
    straight to the register that follows it.

    Parameters
    ----------
    shape : shape-like
        Shape of a word (e.g. an :class:`amaranth.lib.data.ArrayLayout` of activations).
    depth : int
        Words.
    slice_bits : int
        Bits per slice (the last slice holds the remainder); default
        :func:`block_ram_slice_bits` of ``depth``.
    collisions_undefined : bool
        If set, a read of the word a write port writes in the same cycle is undefined on the
        FPGA (Yosys' ``no_rw_check`` attribute): give it to a memory whose owner never uses
        such a read. Without it Yosys keeps the simulated old-data behaviour by delaying every
        write a cycle and forwarding it to colliding reads: a register on each write data bit,
        and an address compare and a multiplexer between the RAM's read data and the register
        that follows it. Simulation (Amaranth, Verilator) always returns the old word. Sliced,
        such a memory has one write port and each slice is a :class:`hw.block_ram.BlockRam` per
        read port.
    read_stages : int
        1, or 2 (needs ``collisions_undefined``): a second register stage on the read data,
        which on ECP5 is the block RAM's own output register (0.96 instead of 5.83 ns from the
        clock to the read data in nextpnr's timing).

    The slicing is a mapping for synthesis: it is elaborated only for a platform (a board or
    vendor build; ``sliced=None``, the default) or when ``sliced=True``. Without a platform
    (Verilog for simulation) the memory is one :class:`~amaranth.lib.memory.Memory` with the same
    behaviour, since hundreds of slices times ``rows`` read ports multiply the Verilog, and
    Verilator's compile time, by twenty for a 16x16 array.

    Ports are requested before elaboration, as for :class:`~amaranth.lib.memory.Memory`:
    :meth:`read_port` and :meth:`write_port` return the port interface (``addr``, ``data``,
    ``en``) to drive.
    """

    def __init__(self, *, shape, depth: int, slice_bits: int | None = None,
                 collisions_undefined: bool = False, sliced: bool | None = None,
                 read_stages: int = 1):
        if read_stages == 2 and not collisions_undefined:
            raise ValueError("two read stages need collisions_undefined (hw.block_ram.BlockRam)")
        self.shape, self.depth, self.sliced = shape, depth, sliced
        self.slice_bits = slice_bits or block_ram_slice_bits(depth)
        self.attrs = NO_COLLISION_LOGIC if collisions_undefined else None
        self.read_stages = read_stages
        self._read_ports: list[ReadPort] = []
        self._write_ports: list[WritePort] = []

    def read_port(self) -> ReadPort:
        """A synchronous (``sync`` domain), non-transparent read port: ``data`` is the word at
        the ``addr`` of ``read_stages`` enabled (``en``) cycles earlier."""
        port = ReadPort.Signature(addr_width=ceil_log2(self.depth), shape=self.shape).create()
        self._read_ports.append(port)
        return port

    def write_port(self) -> WritePort:
        """A ``sync`` write port writing whole words."""
        port = WritePort.Signature(addr_width=ceil_log2(self.depth), shape=self.shape).create()
        self._write_ports.append(port)
        return port

    def elaborate(self, platform) -> Module:
        m = Module()
        width = Shape.cast(self.shape).width
        sliced = platform is not None if self.sliced is None else self.sliced
        slice_bits = self.slice_bits if sliced else width
        for i, low in enumerate(range(0, width, slice_bits)):
            high = min(low + slice_bits, width)
            if sliced and self.attrs is not None:
                self._block_rams(m, i, low, high)
                continue
            piece = Memory(shape=unsigned(high - low), depth=self.depth, init=[],
                           attrs=self.attrs)
            m.submodules[f"slice{i}"] = piece
            for port in self._write_ports:
                ours = piece.write_port()
                m.d.comb += [ours.addr.eq(port.addr), ours.en.eq(port.en),
                             ours.data.eq(Value.cast(port.data)[low:high])]
            for j, port in enumerate(self._read_ports):
                data = Value.cast(port.data)[low:high]
                if self.attrs is None:
                    ours = piece.read_port()
                    m.d.comb += [ours.addr.eq(port.addr), ours.en.eq(port.en), data.eq(ours.data)]
                else:
                    word = registered_read(m, piece, port.addr, port.en, f"read{j}_slice{i}")
                    if self.read_stages == 2:
                        second = Signal.like(word, name=f"read{j}_slice{i}_2")
                        with m.If(port.en):
                            m.d.sync += second.eq(word)
                        word = second
                    m.d.comb += data.eq(word)
        return m

    def _block_rams(self, m: Module, i: int, low: int, high: int) -> None:
        """Slice ``i`` (bits ``low .. high``) as one :class:`hw.block_ram.BlockRam` per read port
        (a block RAM has one read port beside its write port; Yosys would replicate too), so
        that a second read stage is the RAM's output register."""
        (wr,) = self._write_ports
        for j, port in enumerate(self._read_ports):
            ram = BlockRam(width=high - low, depth=self.depth, read_stages=self.read_stages)
            m.submodules[f"slice{i}_read{j}"] = ram
            m.d.comb += [ram.write.addr.eq(wr.addr), ram.write.en.eq(wr.en),
                         ram.write.data.eq(Value.cast(wr.data)[low:high]),
                         ram.read.addr.eq(port.addr), ram.read.en.eq(port.en),
                         Value.cast(port.data)[low:high].eq(ram.read.data)]
