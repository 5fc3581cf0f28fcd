"""The GELU unit: a fully pipelined stream function ``y = GELU(x)`` on ``lanes`` values per beat.

It computes exactly :func:`golden.gelu.gelu` (read that module's docstring for the arithmetic):
``GELU(x) = ReLU(x) - delta(|x|)`` with ``delta`` linear on each of ``table_entries`` segments
whose coefficients ``(a, c)`` sit in one ROM word, computed by :func:`golden.gelu.gelu_table`.
Per lane: one ROM read port, one ``c_bits x (P)``-bit multiplier (13 x 7 bits by default), two
adders and a saturating clamp.

Number formats (``hardware.gelu``): inputs signed ``input_bits`` with ``input_frac_bits``;
outputs signed ``output_bits`` with ``output_frac_bits``, rounded half up once, saturated.

Pipeline (timing in :mod:`sim.timing.gelu`, asserted equal by ``tests/hw/test_gelu.py``):

1. ``|x|`` -> segment index (the ROM address) and position ``f`` into registers; ReLU(x);
2. table read from the registered address into the ROM's data register (synchronous read);
   ``f`` zeroed past the table's range;
3. ``c * f`` (the multiplier, both operands from registers) and ``ReLU << . - a << P + 1/2 LSB``
   in parallel;
4. subtract, shift, saturate into the output register (or, with ``bypass``, the input value).

Latency 4 cycles from an input handshake to its output being valid; throughput one beat
(``lanes`` elements) per cycle. Back-pressure stalls the whole pipeline: every register,
including the ROM's read register, advances only when the output register is empty or being
read (``i.ready = ~o.valid | o.ready``), so no beat is lost or duplicated and bubbles are
squeezed out only at the output.

Size (ulx3s, 1 lane, in the ULX3S board top, ``moeaccel fpga --blocks gelu``, the table ROM built
from logic): ECP5 ``synth_ecp5``: 49 LUT4 + 23 CCU2C, 112 FF, 1 MULT18X18D (3-stage version: 117
LUT4, 80 FF). Post-route the block is no longer the board top's critical path (105 MHz, set by
the host bridge; the 3-stage version's stage 1 was 12.87 ns, 77.7 MHz).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.gelu import gelu_table, segmentation, table_field_bits
from hw.saturate import saturate
from moeaccel.config import DesignConfig, GeluConfig


#: Default width of the passthrough ``tag`` (a ``last`` flag).
DEFAULT_TAG_BITS = 1


def input_layout(ge: GeluConfig, tag_bits: int = DEFAULT_TAG_BITS,
                 bypass: bool = False) -> data.StructLayout:
    """Input beat: ``data`` (``lanes`` signed inputs, lane ``k`` in bits ``[k*w, (k+1)*w)``) and a
    ``tag`` passed through unchanged (e.g. a ``last`` flag or a column index); with ``bypass``,
    a ``bypass`` flag: the beat's data leaves unchanged instead of through GELU."""
    fields = {"data": data.ArrayLayout(signed(ge.input_bits), ge.lanes),
              "tag": unsigned(tag_bits)}
    return data.StructLayout({**fields, "bypass": 1} if bypass else fields)


def output_layout(ge: GeluConfig, tag_bits: int = DEFAULT_TAG_BITS,
                  bypass: bool = False) -> data.StructLayout:
    """Output beat: ``data`` (``lanes`` signed outputs; with ``bypass`` wide enough for an input
    too) and the input beat's ``tag``."""
    bits = max(ge.output_bits, ge.input_bits) if bypass else ge.output_bits
    return data.StructLayout({
        "data": data.ArrayLayout(signed(bits), ge.lanes),
        "tag": unsigned(tag_bits),
    })


def rom_layout(ge: GeluConfig) -> data.StructLayout:
    """One ROM word: segment offset ``a`` and change ``c``, widths fitted to the table."""
    a_bits, c_bits = table_field_bits(ge)
    return data.StructLayout({"a": signed(a_bits), "c": signed(c_bits)})


class Gelu(wiring.Component):
    """GELU on a stream of ``lanes``-wide beats.

    Parameters
    ----------
    cfg : DesignConfig
        Formats, lanes and table from ``cfg.hardware.gelu``.
    tag_bits : int
        Width of the passthrough ``tag`` field (default 1: a ``last`` flag).
    bypass : bool
        Add the input's ``bypass`` flag: such beats leave with their input values (same latency),
        chosen in the output register.

    Members
    -------
    i : In(stream.Signature(input_layout(...)))
        Input beats; ``ready`` whenever the pipeline can advance.
    o : Out(stream.Signature(output_layout(...)))
        ``GELU`` of each input beat, in order, 4 cycles after it was accepted (no stalls).
    """

    def __init__(self, cfg: DesignConfig, tag_bits: int = DEFAULT_TAG_BITS,
                 bypass: bool = False):
        self.ge = cfg.hardware.gelu
        self.tag_bits = tag_bits
        self.bypass = bypass
        super().__init__({
            "i": In(stream.Signature(input_layout(self.ge, tag_bits, bypass))),
            "o": Out(stream.Signature(output_layout(self.ge, tag_bits, bypass))),
        })

    def elaborate(self, platform) -> Module:
        ge = self.ge
        seg = segmentation(ge)
        s, p = seg.fine_shift, seg.pos_bits
        relu_shift = ge.table_frac_bits + p - ge.input_frac_bits     # ReLU into table units
        out_shift = ge.table_frac_bits + p - ge.output_frac_bits     # final rounding shift
        layout = rom_layout(ge)

        m = Module()
        m.submodules.rom = rom = Memory(
            shape=layout, depth=ge.table_entries,
            init=[{"a": int(a), "c": int(c)} for a, c in gelu_table(ge)])

        # The whole pipeline advances together, whenever the output register can take a beat.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        valid = [Signal(name=f"valid{k}") for k in (1, 2, 3)]
        tag = [Signal(self.tag_bits, name=f"tag{k}", reset_less=True) for k in (1, 2, 3)]
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid), valid[1].eq(valid[0]),
                         valid[2].eq(valid[1]), self.o.valid.eq(valid[2]),
                         tag[0].eq(self.i.payload.tag), tag[1].eq(tag[0]), tag[2].eq(tag[1]),
                         self.o.payload.tag.eq(tag[2])]

        def stage(name: str, shape, value) -> Signal:
            """A pipeline register, loaded from ``value`` when the pipe advances."""
            reg = Signal(shape, name=name, reset_less=True)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        if self.bypass:
            bypass3 = self.i.payload.bypass
            for k in (1, 2, 3):
                bypass3 = stage(f"bypass{k}", 1, bypass3)

        for lane in range(ge.lanes):
            x = self.i.payload.data[lane]

            # Stage 1: |x| -> segment index (ROM address) and position f; ReLU(x).
            u = Signal(unsigned(ge.input_bits), name=f"u{lane}")
            fine = Signal(name=f"fine{lane}")
            m.d.comb += [u.eq(Mux(x < 0, -x, x)), fine.eq(u < seg.fine_end)]
            index1 = stage(f"index1_{lane}", range(ge.table_entries),
                           Mux(fine, u >> s, (u >> (s + 1)) + seg.coarse_base))
            f1 = stage(f"f1_{lane}", unsigned(p), Mux(fine, u[:s] << 1, u[:s + 1]))
            in_table1 = stage(f"in_table1_{lane}", 1, u < seg.table_end)
            relu1 = stage(f"relu1_{lane}", unsigned(ge.input_bits - 1), Mux(x < 0, 0, x))

            # Stage 2: the table read (into the ROM's data register); f is zeroed past the table.
            port = rom.read_port()
            m.d.comb += [port.addr.eq(index1), port.en.eq(advance)]
            f2 = stage(f"f2_{lane}", unsigned(p), Mux(in_table1, f1, 0))
            in_table2 = stage(f"in_table2_{lane}", 1, in_table1)
            relu2 = stage(f"relu2_{lane}", unsigned(ge.input_bits - 1), relu1)

            # Stage 3: the lane's multiplier (both operands straight from registers), and the
            # rest of the sum with the rounding half.
            word = port.data
            half = 1 << (out_shift - 1) if out_shift > 0 else 0
            base = (relu2 << relu_shift) - (Mux(in_table2, word.a, 0) << p) + half
            prod3 = stage(f"prod3_{lane}", signed(len(word.c) + p + 1), word.c * f2)
            base3 = stage(f"base3_{lane}", signed(len(base)), base)

            # Stage 4: subtract, round (shift), saturate (or the bypassed input).
            acc = base3 - prod3
            y = acc >> out_shift if out_shift >= 0 else acc << -out_shift
            result = saturate(y, ge.output_bits)
            if self.bypass:
                x3 = x
                for k in (1, 2, 3):
                    x3 = stage(f"x{k}_{lane}", signed(ge.input_bits), x3)
                result = Mux(bypass3, x3, result)
            with m.If(advance):
                m.d.sync += self.o.payload.data[lane].eq(result)
        return m
