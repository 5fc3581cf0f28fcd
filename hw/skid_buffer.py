"""A skid buffer: a stream stage whose upstream ``ready`` is a register, at zero latency."""

from __future__ import annotations

from amaranth import Module, Mux, Signal

from hw.stream_stage import StreamStage


class SkidBuffer(StreamStage):
    """Passes ``i`` to ``o`` unchanged, but ``i.ready`` comes from a flip-flop, so a consumer's
    ``ready`` logic never reaches the producer's registers combinationally.

    While the buffer is empty a beat goes straight through (``o`` = ``i``, no added latency).
    If ``o`` refuses a beat that ``i`` offered, the beat is kept in the one-entry skid register
    and ``i.ready`` drops from the next cycle until ``o`` has taken it. With ``o`` always ready
    the stream runs at one beat per cycle; after a refused cycle the consumer sees the kept beat
    and then the producer's next beats, so it sees the same sequence in the same cycles as without
    the buffer (the producer may run one beat ahead). Nothing is lost, duplicated or reordered.

    The skid register loads ``i``'s payload in every cycle the buffer is empty (whether or not a
    beat is offered or refused), so its enable is a flip-flop alone: ``o.ready`` reaches only
    that flip-flop, never the payload-wide register's enables. Two flip-flops hold the state:
    ``full`` for the handshakes (``i.ready``, ``o.valid``: a few loads, so the producer's and
    the consumer's control logic start at a lightly loaded register) and its complement
    ``empty`` for the payload multiplexer and the skid register's enables (twice the payload
    width of loads). ``empty`` is stored inverted so that synthesis does not merge the two.

    Members: ``i`` and ``o`` (:class:`hw.stream_stage.StreamStage`).
    """

    def elaborate(self, platform) -> Module:
        m = Module()
        full = Signal()                   # handshakes only
        empty = Signal(init=1)            # ~full, for the payload-wide loads
        kept = Signal.like(self.i.payload, reset_less=True)
        m.d.comb += [self.i.ready.eq(~full),
                     self.o.valid.eq(full | self.i.valid),
                     self.o.payload.eq(Mux(empty, self.i.payload, kept))]
        # a beat offered and refused stays; a kept beat leaves when taken
        refused = self.o.valid & ~self.o.ready
        m.d.sync += [full.eq(refused), empty.eq(~refused)]
        with m.If(empty):
            m.d.sync += kept.eq(self.i.payload)
        return m
