"""The GELU unit: a fully pipelined stream function ``y = GELU(x)`` on ``lanes`` values per beat.

It computes exactly :func:`golden.gelu.gelu` (read that module's docstring for the arithmetic):
``GELU(x) = ReLU(x) - delta(|x|)`` with ``delta`` linear on each of ``table_entries`` segments
whose coefficients ``(a, c)`` sit in one ROM word, computed by :func:`golden.gelu.gelu_table`.
Per lane: the table as logic (pieces of ``PIECE_WORDS`` words, one LUT4 per bit each), one
``c_bits x (P)``-bit multiplier (13 x 7 bits by default), two adders and a saturating clamp.

Number formats (``hardware.gelu``): inputs signed ``input_bits`` with ``input_frac_bits``;
outputs signed ``output_bits`` with ``output_frac_bits``, rounded half up once, saturated.

Pipeline (timing in :mod:`sim.timing.gelu`, asserted equal by ``tests/hw/test_gelu.py``):

1. ``|x|`` -> segment index (the table address) and position ``f`` into registers; ReLU(x);
2. every ``PIECE_WORDS``-word piece of the table read at the address's low bits into its own
   register (one LUT4 level); ``f`` zeroed past the table's range (and for bypassed beats,
   whose input takes ReLU's place in the sum, shifted so the sum gives it back);
3. the piece at the address's high bits into the table-word register (a small multiplexer; the
   whole 128-word table read between two registers was 8 LUT levels, 12.5 ns estimated);
4. ``c`` and ``f`` into the lane's :class:`hw.multiplier.Multiplier`'s input registers (on ECP5
   the DSP's own: the route into the DSP column gets a cycle of its own) and ``ReLU << . -
   a << P + 1/2 LSB`` in parallel;
5. ``c * f`` into the multiplier's output register (the DSP's); the sum's base held;
6. subtract, shift, saturate into the output register.

Latency 6 cycles (``sim.timing.gelu.PIPELINE_STAGES``) from an input handshake to its output
being valid; throughput one beat (``lanes`` elements) per cycle. Back-pressure stalls the whole
pipeline: every register advances only when the output register is empty or being read
(``i.ready = ~o.valid | o.ready``), so no beat is lost or duplicated and bubbles are squeezed
out only at the output.

Size of the 4-stage version, whose table was one ROM built from logic (ulx3s, 1 lane, in the ULX3S
board top, ``moeaccel fpga --blocks gelu``): ECP5 ``synth_ecp5``: 49 LUT4 + 23 CCU2C, 112 FF, 1
MULT18X18D (3-stage version: 117 LUT4, 80 FF). Post-route the block is no longer the board top's
critical path (105 MHz, set by the host bridge; the 3-stage version's stage 1 was 12.87 ns, 77.7
MHz).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.gelu import gelu_table, segmentation, table_field_bits
from hw.multiplier import STAGES as MULTIPLIER_STAGES, Multiplier
from hw.saturate import saturate
from moeaccel.config import DesignConfig, GeluConfig
from sim.timing import gelu as timing


#: Default width of the passthrough ``tag`` (a ``last`` flag).
DEFAULT_TAG_BITS = 1
#: The table is read as pieces of ``2 ** PIECE_BITS`` words, one LUT4 per bit each.
PIECE_BITS = 4
PIECE_WORDS = 1 << PIECE_BITS


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


def _lookup(words: list[int], width: int, index: Value) -> Value:
    """``words[index]`` (``width``-bit constants) as one constant bit-select per bit: each bit a
    function of ``index`` alone, one LUT4 for a 16-word table (a ``switch`` would become a ROM
    whose address decoding Yosys shares between the bits, several LUT levels deep)."""
    return Cat(Const(sum(((w >> b) & 1) << k for k, w in enumerate(words)), len(words))
               .bit_select(index, 1) for b in range(width))


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
        put in ReLU's place in the sum at stage 2 with the table term zeroed (when the input
        fits the output and the rounding shift is not negative; else chosen in the output
        register).

    Members
    -------
    i : In(stream.Signature(input_layout(...)))
        Input beats; ``ready`` whenever the pipeline can advance.
    o : Out(stream.Signature(output_layout(...)))
        ``GELU`` of each input beat, in order, 6 cycles after it was accepted (no stalls).
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
        words = [layout.const({"a": int(a), "c": int(c)}).as_value().value
                 for a, c in gelu_table(ge)]
        pieces = [words[k:k + PIECE_WORDS] for k in range(0, len(words), PIECE_WORDS)]
        a_bits, c_bits = table_field_bits(ge)
        # the sum's magnitude bound: ReLU (or a bypassed input) + table base + product + half,
        # so the sum and its saturation carry no bits that can never differ from the sign
        bound = (max(((1 << (ge.input_bits - 1)) - 1) << relu_shift,
                     (1 << (ge.input_bits - 1)) << max(out_shift, 0))
                 + (1 << (a_bits - 1 + p)) + (1 << (c_bits - 1)) * ((1 << p) - 1)
                 + (1 << max(out_shift - 1, 0)))
        sum_shape = signed(bound.bit_length() + 1)
        # a bypassed beat can become the sum's operand (ReLU's place, no table term), so the
        # output register needs no select, when that sum gives it back unchanged
        early_bypass = self.bypass and out_shift >= 0 and ge.input_bits <= ge.output_bits

        m = Module()

        # The whole pipeline advances together, whenever the output register can take a beat.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        def stage(name: str, shape, value) -> Signal:
            """A pipeline register, loaded from ``value`` when the pipe advances."""
            reg = Signal(shape, name=name, reset_less=True)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        def delay(name: str, shape, value, stages: range) -> list[Signal]:
            """``value`` through the pipeline registers ``name{k}`` for ``k`` in ``stages``."""
            regs = []
            for k in stages:
                value = stage(f"{name}{k}", shape, value)
                regs.append(value)
            return regs

        last = timing.PIPELINE_STAGES - 1
        assert MULTIPLIER_STAGES == 2 and last == 5      # the multiplier is stages 4 and 5
        valid = [Signal(name=f"valid{k}") for k in range(1, last + 1)]
        with m.If(advance):
            m.d.sync += [a.eq(b) for a, b in zip(valid + [self.o.valid],
                                                   [self.i.valid] + valid)]
        tag = delay("tag", self.tag_bits, self.i.payload.tag, range(1, last + 1))
        with m.If(advance):
            m.d.sync += self.o.payload.tag.eq(tag[-1])
        bypass = (delay("bypass", 1, self.i.payload.bypass, range(1, last + 1))
                  if self.bypass else None)

        for lane in range(ge.lanes):
            x = self.i.payload.data[lane]

            # Stage 1: |x| -> segment index (table address) and position f; ReLU(x).
            # |x| < bound as two compares on x itself, in parallel with the negation
            u = Signal(unsigned(ge.input_bits), name=f"u{lane}")
            fine = Signal(name=f"fine{lane}")
            m.d.comb += [u.eq(Mux(x < 0, -x, x)),
                         fine.eq((x < seg.fine_end) & (x > -seg.fine_end))]
            index1 = stage(f"index1_{lane}", range(ge.table_entries),
                           Mux(fine, u >> s, (u >> (s + 1)) + seg.coarse_base))
            f1 = stage(f"f1_{lane}", unsigned(p), Mux(fine, u[:s] << 1, u[:s + 1]))
            in_table1 = stage(f"in_table1_{lane}", 1,
                              (x < seg.table_end) & (x > -seg.table_end))
            relu1 = stage(f"relu1_{lane}", unsigned(ge.input_bits - 1), Mux(x < 0, 0, x))
            x1 = stage(f"x1_{lane}", signed(ge.input_bits), x) if self.bypass else None

            # Stage 2: every PIECE_WORDS-word piece of the table read at the low address bits
            # (one LUT4 per bit); the operand in ReLU's place and whether the table applies.
            piece2 = [stage(f"piece2_{k}_{lane}", layout.size,
                            _lookup(piece, layout.size, index1[:PIECE_BITS]))
                      for k, piece in enumerate(pieces)]
            high2 = stage(f"high2_{lane}", range(len(pieces)), index1 >> PIECE_BITS)
            use_table1 = in_table1 & ~bypass[0] if early_bypass else in_table1
            relu = relu1 << relu_shift
            if early_bypass:
                relu = Mux(bypass[0], x1 << out_shift, relu)
            f2 = stage(f"f2_{lane}", unsigned(p), Mux(use_table1, f1, 0))
            use_a2 = stage(f"use_a2_{lane}", 1, use_table1)
            relu2 = stage(f"relu2_{lane}", signed(len(relu) + 1), relu)

            # Stage 3: the piece at the high address bits -> the table word.
            word3 = stage(f"word3_{lane}", layout, Cat(
                Cat(piece[b] for piece in piece2).bit_select(high2, 1)
                for b in range(layout.size)))
            f3 = stage(f"f3_{lane}", unsigned(p), f2)
            use_a3 = stage(f"use_a3_{lane}", 1, use_a2)
            relu3 = stage(f"relu3_{lane}", signed(len(relu2)), relu2)

            # Stages 4-5: the lane's multiplier (its input registers, on ECP5 the DSP's own,
            # load c and f from registers; its output register holds the product), and the rest
            # of the sum with the rounding half, then held a stage.
            mul = Multiplier(word3.c.shape(), unsigned(p))
            m.submodules[f"mul_{lane}"] = mul
            m.d.comb += [mul.a.eq(word3.c), mul.b.eq(f3), mul.en.eq(advance)]
            half = 1 << (out_shift - 1) if out_shift > 0 else 0
            base4 = stage(f"base4_{lane}", sum_shape,
                          relu3 - (Mux(use_a3, word3.a, 0) << p) + half)
            base5 = stage(f"base5_{lane}", sum_shape, base4)
            prod5 = mul.p

            # Stage 6: subtract, round (shift), saturate (or the bypassed input).
            acc = Signal(sum_shape, name=f"sum{lane}")
            m.d.comb += acc.eq(base5 - prod5)
            y = acc >> out_shift if out_shift >= 0 else acc << -out_shift
            result = saturate(y, ge.output_bits)
            if self.bypass and not early_bypass:
                x4 = x1
                for k in range(2, last + 1):
                    x4 = stage(f"x{k}_{lane}", signed(ge.input_bits), x4)
                result = Mux(bypass[-1], x4, result)
            with m.If(advance):
                m.d.sync += self.o.payload.data[lane].eq(result)
        return m
