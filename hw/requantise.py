"""The compute unit's output stage: requantise ``cols`` accumulators per beat."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.fixed import smax, smin
from hw.compute_unit_layouts import Layouts, out_bits
from moeaccel.config import DesignConfig
from sim.timing import compute_unit as timing


class Requantiser(wiring.Component):
    """``saturate(shift_round(acc * multiplier, shift), bits)`` on every lane, exactly
    :func:`golden.fixed.requantise` with the config's rounding; ``bits`` is ``operand_bits``, or
    :func:`hw.compute_unit_layouts.out_bits` when the beat's ``wide`` flag is set.

    Pipeline (``sim.timing.compute_unit.REQUANT_STAGES`` = 3 registers): product ``acc *
    multiplier`` and the rounding constant -> rounding add -> arithmetic shift and saturation into
    the output register. One beat per cycle; back-pressure stalls the pipeline stage by stage (a
    bubble is filled even while ``o`` is stalled).

    Members
    -------
    i : In(stream of ``Layouts.drain``)
    o : Out(stream of ``Layouts.requantised``): ``out``'s fields, the activation settings
        passed through
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        lay = Layouts(cfg)
        super().__init__({
            "i": In(stream.Signature(lay.drain)),
            "o": Out(stream.Signature(lay.requantised)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        cols = cu.cols
        assert timing.REQUANT_STAGES == 3
        prod_shape = signed(cu.accumulator_bits + cu.requant_multiplier_bits + 1)
        sum_shape = signed(prod_shape.width + 1)
        narrow, wide = cu.operand_bits, out_bits(self.cfg)

        # handshake: a stage loads when it is empty or the next stage loads
        valid = [Signal(name=f"valid{s}") for s in range(2)]
        load = [Signal(name=f"load{s}") for s in range(3)]
        m.d.comb += [
            load[2].eq(~self.o.valid | self.o.ready),
            load[1].eq(~valid[1] | load[2]),
            load[0].eq(~valid[0] | load[1]),
            self.i.ready.eq(load[0]),
        ]

        # stage 0: products and rounding constant
        prod = [Signal(prod_shape, name=f"prod_{c}") for c in range(cols)]
        half = Signal(cu.requant_max_shift, name="half")    # 2**(shift-1), 0 for shift 0
        meta0 = Signal(self.i.p.shape())
        with m.If(load[0]):
            m.d.sync += [valid[0].eq(self.i.valid), meta0.eq(self.i.p)]
            for c in range(cols):
                m.d.sync += prod[c].eq(self.i.p.acc[c] * self.i.p.multiplier)
            if cu.rounding == "half_up":
                m.d.sync += half.eq((Const(1, 2) << self.i.p.shift) >> 1)
            else:
                m.d.sync += half.eq(0)

        # stage 1: rounding add
        total = [Signal(sum_shape, name=f"sum_{c}") for c in range(cols)]
        meta1 = Signal(self.i.p.shape())
        with m.If(load[1]):
            m.d.sync += [valid[1].eq(valid[0]), meta1.eq(meta0)]
            for c in range(cols):
                m.d.sync += total[c].eq(prod[c] + half)

        # stage 2: shift and saturate into the output register
        with m.If(load[2]):
            m.d.sync += [self.o.valid.eq(valid[1]), self.o.p.row.eq(meta1.row),
                         self.o.p.last.eq(meta1.last), self.o.p.gelu.eq(meta1.gelu),
                         self.o.p.act_multiplier.eq(meta1.act_multiplier),
                         self.o.p.act_shift.eq(meta1.act_shift)]
            hi = Mux(meta1.wide, smax(wide), smax(narrow))
            lo = Mux(meta1.wide, smin(wide), smin(narrow))
            for c in range(cols):
                shifted = Signal(sum_shape, name=f"shifted_{c}")
                m.d.comb += shifted.eq(total[c] >> meta1.shift)
                with m.If(shifted > hi):
                    m.d.sync += self.o.p.data[c].eq(hi)
                with m.Elif(shifted < lo):
                    m.d.sync += self.o.p.data[c].eq(lo)
                with m.Else():
                    m.d.sync += self.o.p.data[c].eq(shifted)
        return m
