"""A credit-counted output buffer: back-pressure for a fixed-latency pipeline without a
combinational ``ready`` chain through it."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.hdl import ShapeLike
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
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
    register, to add no cycle). ``o.valid`` is a flip-flop (bit 0 of a thermometer count of
    the stored beats); ``o.payload`` is read asynchronously from the storage (LUT RAM).
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
        # the FIFO: LUT-RAM storage read asynchronously at the read pointer; the credits
        # guarantee a free entry for every write, so it needs no full flag
        m.submodules.storage = storage = Memory(shape=self.shape, depth=self.depth, init=[])
        wr, rd = storage.write_port(), storage.read_port(domain="comb")
        w_ptr, r_ptr = Signal(range(self.depth)), Signal(range(self.depth))

        def step(ptr: Signal) -> Value:
            return Mux(ptr == self.depth - 1, 0, ptr + 1)

        push, pop = self.i.valid, self.o.valid & self.o.ready
        m.d.comb += [wr.en.eq(push), wr.addr.eq(w_ptr), wr.data.eq(self.i.payload),
                     rd.addr.eq(r_ptr), self.o.payload.eq(rd.data)]
        with m.If(push):
            m.d.sync += w_ptr.eq(step(w_ptr))
        with m.If(pop):
            m.d.sync += r_ptr.eq(step(r_ptr))

        # the stored beats and the free credits as thermometer codes (bit i: more than i), so
        # each bit's next value is a 3-way choice (up, down, hold) of its neighbours: ``o.valid``
        # is bit 0 of one, ``credit`` bit 0 of the other, with no level compare or adder
        # between the FIFO's state and either flag, and ``o.ready`` one LUT input from both
        def thermometer(name: str, init: int, up: Value, down: Value) -> Signal:
            code = Signal(self.depth, init=init, name=name)
            with m.If(up & ~down):
                m.d.sync += code.eq(Cat(1, code[:-1]))
            with m.Elif(down & ~up):
                m.d.sync += code.eq(code[1:])
            return code

        stored = thermometer("stored", 0, push, pop)
        credits = thermometer("credits", (1 << self.depth) - 1, pop, self.take)
        m.d.comb += [self.o.valid.eq(stored[0]), self.credit.eq(credits[0])]
        return m
