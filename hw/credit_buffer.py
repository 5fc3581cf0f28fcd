"""A credit-counted output buffer: back-pressure for a fixed-latency pipeline without a
combinational ``ready`` chain through it."""

from __future__ import annotations

from amaranth import Cat, Module, Shape, Signal
from amaranth.hdl import ShapeLike
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out


def full_rate_depth(latency: int) -> int:
    """Smallest :class:`CreditBuffer` depth that never withholds a credit while ``o`` is always
    ready, for a pipeline whose beat taken in cycle ``t`` is written (``i.valid``) in cycle
    ``t + latency``: the credit of that beat comes back in cycle ``t + latency + 2``."""
    if latency < 0:
        raise ValueError(f"latency must be >= 0, got {latency}")
    return latency + 2


class CreditBuffer(wiring.Component):
    """Output FIFO of a pipeline that never stalls, with a credit counter in front of it.

    The producer holds a beat back until ``credit`` is high, then asserts ``take`` for it (the beat
    enters its pipeline, which always advances). Each beat taken later arrives on ``i`` (always
    ready: the credit reserved a FIFO slot for it) and leaves on ``o`` in order. ``o.ready``
    reaches only the FIFO's read pointer, its level and the credit counter, never the producer's
    pipeline: the producer sees back-pressure one cycle late, through the registered ``credit``.
    Nothing is lost or duplicated for any ``o.ready`` pattern.

    Timing: a beat written on ``i`` in cycle ``t`` is valid on ``o`` in cycle ``t + 1`` (the FIFO's
    storage is the pipeline's last register: feed ``i`` from the last stage's logic, not from a
    register, to add no cycle). ``o.payload`` is read asynchronously from the storage (LUT RAM).
    With ``depth >= full_rate_depth(latency)`` and ``o`` always ready, ``credit`` stays high: one
    beat per cycle.

    Parameters
    ----------
    shape : ShapeLike
        Payload of ``i`` and ``o``.
    depth : int
        FIFO entries = credits (beats in flight in the producer plus beats buffered).

    Members
    -------
    credit : Out(1)
        Registered: a beat may be taken this cycle.
    take : In(1)
        The producer takes a beat this cycle (only while ``credit`` is high).
    i : In(stream.Signature(shape, always_ready=True))
        The producer's output; every beat on it was announced by a ``take``.
    o : Out(stream.Signature(shape))
        The buffered beats.
    """

    def __init__(self, shape: ShapeLike, depth: int):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.shape, self.depth = shape, depth
        super().__init__({
            "credit": Out(1),
            "take": In(1),
            "i": In(stream.Signature(shape, always_ready=True)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.fifo = buf = fifo.SyncFIFO(width=Shape.cast(self.shape).width,
                                                depth=self.depth)
        m.d.comb += [
            buf.w_en.eq(self.i.valid), buf.w_data.eq(self.i.payload),
            self.o.valid.eq(buf.r_rdy), self.o.payload.eq(buf.r_data),
            buf.r_en.eq(self.o.ready),
        ]

        # the free credits as a thermometer code (bit i: more than i credits), so each bit's
        # next value is a 3-way choice (up, down, hold) and ``credit`` is bit 0: no adder or
        # compare between the FIFO's level and ``credit``
        credits = Signal(self.depth, init=(1 << self.depth) - 1)
        returned = self.o.valid & self.o.ready
        up, down = Signal(), Signal()
        m.d.comb += [up.eq(returned & ~self.take), down.eq(self.take & ~returned)]
        with m.If(up):
            m.d.sync += credits.eq(Cat(1, credits[:-1]))
        with m.Elif(down):
            m.d.sync += credits.eq(credits[1:])
        m.d.comb += self.credit.eq(credits[0])
        return m
