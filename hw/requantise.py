"""The compute unit's output stage: requantise one beat of accumulators (``cols`` lanes, or
``compute_unit.output_lanes``)."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts, out_bits
from hw.saturate import saturate
from moeaccel.config import DesignConfig
from sim.timing import compute_unit as timing


#: Width of the unsigned low chunks the accumulator is cut into for the product: an unsigned
#: 17-bit chunk fits a signed 18-bit multiplier input (ECP5 MULT18X18D, Xilinx DSP48 B port), so
#: each partial product is one hard multiplier and lands in a register of its own.
CHUNK_BITS = 17


class Requantiser(wiring.Component):
    """``saturate(shift_round(acc * multiplier, shift), bits)`` on every lane, exactly
    :func:`golden.fixed.requantise` with the config's rounding; ``bits`` is ``operand_bits``, or
    :func:`hw.compute_unit_layouts.out_bits` when the beat's ``wide`` flag is set.

    Pipeline (``sim.timing.compute_unit.REQUANT_STAGES`` = 4 registers), always advancing (no
    back-pressure: the compute unit's :class:`hw.credit_buffer.CreditBuffer` reserves room for
    every beat before it enters):

    0. partial products ``acc[17j : 17j+17] * multiplier`` (one hard multiplier each, the top
       chunk signed) and the rounding constant ``2**(shift-1)`` (``half_up``; 0 for ``truncate``
       or shift 0);
    1. ``sum_j (p_j << 17j) + half`` (equal to ``acc * multiplier + half``);
    2. arithmetic shift right by ``shift`` (a 5-level barrel shifter);
    3. saturation into the output register, or, with ``registered_output=False``, onto ``o``
       combinationally (the consumer's storage, e.g. the credit buffer's FIFO, is then the fourth
       register).

    One beat per cycle, latency 4 cycles from ``i`` to ``o`` (3 with ``registered_output=False``).
    A beat has ``lanes`` lanes (default ``cols``), each with its own partial-product multipliers.

    Members
    -------
    i : In(stream of ``Layouts.drain``, always ready)
    o : Out(stream of ``Layouts.requantised``, always ready): ``out``'s fields, the activation
        settings passed through
    """

    def __init__(self, cfg: DesignConfig, *, lanes: int | None = None,
                 registered_output: bool = True):
        self.cfg = cfg
        self.registered_output = registered_output
        lay = Layouts(cfg, lanes)
        self.lanes = lay.drain["acc"].shape.length
        super().__init__({
            "i": In(stream.Signature(lay.drain, always_ready=True)),
            "o": Out(stream.Signature(lay.requantised, always_ready=True)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        cols = self.lanes
        assert timing.REQUANT_STAGES == 4
        prod_shape = signed(cu.accumulator_bits + cu.requant_multiplier_bits + 1)
        sum_shape = signed(prod_shape.width + 1)
        narrow, wide = cu.operand_bits, out_bits(self.cfg)
        chunks = range(0, cu.accumulator_bits, CHUNK_BITS)

        # stage 0: partial products and rounding constant
        part = [[Signal(signed(min(CHUNK_BITS, cu.accumulator_bits - lo) + 1
                               + cu.requant_multiplier_bits), name=f"part_{c}_{lo}")
                 for lo in chunks] for c in range(cols)]
        half = Signal(cu.requant_max_shift, name="half")    # 2**(shift-1), 0 for shift 0
        meta0 = Signal(self.i.p.shape())
        valid0 = Signal()
        m.d.sync += [valid0.eq(self.i.valid), meta0.eq(self.i.p)]
        for c in range(cols):
            acc = self.i.p.acc[c]
            for j, lo in enumerate(chunks):
                hi = min(lo + CHUNK_BITS, cu.accumulator_bits)
                chunk = acc[lo:hi].as_signed() if hi == cu.accumulator_bits else acc[lo:hi]
                m.d.sync += part[c][j].eq(chunk * self.i.p.multiplier)
        if cu.rounding == "half_up":
            m.d.sync += half.eq((Const(1, 2) << self.i.p.shift) >> 1)
        else:
            m.d.sync += half.eq(0)

        # stage 1: recombine the partial products with the rounding constant
        total = [Signal(sum_shape, name=f"sum_{c}") for c in range(cols)]
        meta1 = Signal(self.i.p.shape())
        valid1 = Signal()
        m.d.sync += [valid1.eq(valid0), meta1.eq(meta0)]
        for c in range(cols):
            m.d.sync += total[c].eq(sum((p << lo for p, lo in zip(part[c], chunks)), half))

        # stage 2: arithmetic shift
        shifted = [Signal(sum_shape, name=f"shifted_{c}") for c in range(cols)]
        meta2 = Signal(self.i.p.shape())
        valid2 = Signal()
        m.d.sync += [valid2.eq(valid1), meta2.eq(meta1)]
        for c in range(cols):
            m.d.sync += shifted[c].eq(total[c] >> meta1.shift)

        # stage 3: saturate (into the output register, or onto ``o``)
        out = m.d.sync if self.registered_output else m.d.comb
        out += [self.o.valid.eq(valid2), self.o.p.row.eq(meta2.row),
                self.o.p.last.eq(meta2.last), self.o.p.gelu.eq(meta2.gelu),
                self.o.p.act_multiplier.eq(meta2.act_multiplier),
                self.o.p.act_shift.eq(meta2.act_shift)]
        for c in range(cols):
            out += self.o.p.data[c].eq(Mux(meta2.wide, saturate(shifted[c], wide),
                                           saturate(shifted[c], narrow)))
        return m
