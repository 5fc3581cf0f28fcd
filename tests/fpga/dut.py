"""A tiny stream block for bridge tests: ``o = i * 3 + offset``, one register stage, full
throughput, with a register-in (``offset``) and a register-out (``count`` of words done)."""


from amaranth import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

IN_BITS, OUT_BITS, OFFSET_BITS = 12, 20, 9


def reference(xs, offset):
    return [x * 3 + offset for x in xs]


class ScaleAdd(wiring.Component):
    i: In(stream.Signature(signed(IN_BITS)))
    o: Out(stream.Signature(signed(OUT_BITS)))
    offset: In(signed(OFFSET_BITS))
    count: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [self.o.valid.eq(0), self.count.eq(self.count + 1)]
        with m.If(self.i.valid & self.i.ready):
            # x * 3 as x + 2x: Yosys would make the constant product an unregistered hard
            # multiplier, ~9 ns on its own on ECP5 (the small-board flow test routes this block
            # against the 100 MHz target)
            x = self.i.payload
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq((x << 1) + x + self.offset)]
        return m


WIDE_BITS = 200


class Invert(wiring.Component):
    """A wide passthrough, ``o = ~i``, combinational (latency 0), for shallow wide memories."""

    i: In(stream.Signature(WIDE_BITS))
    o: Out(stream.Signature(WIDE_BITS))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(~self.i.payload),
                     self.i.ready.eq(self.o.ready)]
        return m
