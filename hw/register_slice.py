"""A register slice: a stream stage whose ``valid`` and payload come from flip-flops."""

from __future__ import annotations

from amaranth import Module, Signal

from hw.stream_stage import StreamStage


class RegisterSlice(StreamStage):
    """Passes ``i`` to ``o`` one cycle later, with ``o.valid`` and ``o.payload`` registered, so
    the consumer's logic starts at flip-flops rather than at the producer's (e.g. an
    asynchronously read LUT-RAM FIFO's) outputs. The complement of
    :class:`hw.skid_buffer.SkidBuffer`, which registers ``ready``.

    ``i.ready = ~o.valid | o.ready`` (combinational): the slice takes a beat whenever it is empty
    or its beat leaves in the same cycle. Latency 1 cycle; one beat per cycle with ``o`` always
    ready; nothing lost, duplicated or reordered under any ``ready`` pattern.

    Members: ``i`` and ``o`` (:class:`hw.stream_stage.StreamStage`).
    """

    def elaborate(self, platform) -> Module:
        m = Module()
        payload = Signal.like(self.o.payload, reset_less=True)   # data: no reset
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready), self.o.payload.eq(payload)]
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), payload.eq(self.i.payload)]
        return m
