"""The weight streamer: replays one ping/pong slot of the weight buffer into the compute unit's
``bias`` and ``weight`` streams in its tile order (token tiles outer, output tiles inner)."""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from hw.compute_unit_layouts import Layouts
from moeaccel.weight_image import ImageLayout
from moeaccel.config import DesignConfig


def command_layout(cfg: DesignConfig) -> data.StructLayout:
    """``slot``; ``m`` tokens of the GEMM (token tiles of ``rows``); ``tiles`` output tiles and
    ``words`` = ``tiles * k`` weight words of the block in the slot."""
    lay = ImageLayout.of(cfg)
    return data.StructLayout({
        "slot": 1, "m": Layouts(cfg).command["m"].shape,
        "tiles": unsigned(bits_for(lay.slot_wide_words)),
        "words": unsigned(bits_for(lay.slot_weight_words)),
    })


class _Replay(wiring.Component):
    """``repeats`` passes over words ``base .. base+count-1`` of a synchronous memory read port
    (``addr``/``en``/``data`` driven here) as a stream: one word per cycle when ready, one read
    stage; ``start`` (a pulse while not ``busy``) latches the parameters; ``done`` pulses when
    the final beat is taken."""

    def __init__(self, shape, depth: int, count_shape, repeats_shape):
        super().__init__({
            "start": In(1), "base": In(range(depth)), "count": In(count_shape),
            "repeats": In(repeats_shape),
            "o": Out(stream.Signature(shape)),
            "rd_addr": Out(range(depth)), "rd_en": Out(1), "rd_data": In(shape),
            "done": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        busy, last_r = Signal(), Signal()
        base, count = Signal.like(self.base), Signal.like(self.count)
        index = Signal.like(self.count)
        left = Signal.like(self.repeats)
        advance = ~self.o.valid | self.o.ready
        issue = advance & busy
        final = (index == count - 1) & (left == 1)
        m.d.comb += [self.rd_en.eq(advance), self.rd_addr.eq(base + index),
                     self.o.p.eq(self.rd_data), self.busy.eq(busy)]
        with m.If(self.start):
            m.d.sync += [busy.eq(1), index.eq(0), left.eq(self.repeats), base.eq(self.base),
                         count.eq(self.count)]
        with m.If(issue):
            m.d.sync += index.eq(index + 1)
            with m.If(index == count - 1):
                m.d.sync += [index.eq(0), left.eq(left - 1)]
            with m.If(final):
                m.d.sync += busy.eq(0)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(issue), last_r.eq(final)]
        m.d.comb += self.done.eq(self.o.valid & self.o.ready & last_r)
        return m


class WeightStream(wiring.Component):
    """Streams the block in ``slot`` for a GEMM of ``m`` tokens: per token tile, the ``tiles``
    bias words (``bias``) and the ``words`` weight words (``weight``), exactly the beats
    :class:`hw.compute_unit.ComputeUnit` takes. Each stream runs one beat per cycle when ready
    (one memory read stage). ``done`` pulses when the final weight beat is taken: the slot may
    be refilled from the next cycle. A command is accepted when both streams are idle.

    Members
    -------
    cmd : In(stream of :func:`command_layout`)
    bias : Out(stream of ``Layouts.bias``), weight : Out(stream of ``Layouts.weight``)
    done : Out(1)
    wide_read, weight_read : memory read ports (``addr``, ``en`` out; ``data`` in)
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.image = img = ImageLayout.of(cfg)
        lay = Layouts(cfg)
        cmd = command_layout(cfg)

        def read_port(words: int, shape):
            return Out(wiring.Signature({"addr": Out(range(2 * words)), "en": Out(1),
                                         "data": In(shape)}))
        super().__init__({
            "cmd": In(stream.Signature(cmd)),
            "bias": Out(stream.Signature(lay.bias)),
            "weight": Out(stream.Signature(lay.weight)),
            "done": Out(1),
            "wide_read": read_port(img.slot_wide_words, lay.bias),
            "weight_read": read_port(img.slot_weight_words, lay.weight),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        rows = self.cfg.hardware.compute_unit.rows
        img, cmd = self.image, self.cmd.p
        reps = Layouts(self.cfg).command["m"].shape
        m.submodules.biases = biases = _Replay(Layouts(self.cfg).bias, 2 * img.slot_wide_words,
                                               cmd.tiles.shape(), reps)
        m.submodules.weights = weights = _Replay(Layouts(self.cfg).weight,
                                                 2 * img.slot_weight_words, cmd.words.shape(), reps)
        for replay, port, out in ((biases, self.wide_read, self.bias),
                                  (weights, self.weight_read, self.weight)):
            wiring.connect(m, replay.o, wiring.flipped(out))
            m.d.comb += [port.addr.eq(replay.rd_addr), port.en.eq(replay.rd_en),
                         replay.rd_data.eq(port.data)]
        token_tiles = (cmd.m + rows - 1) // rows
        start = self.cmd.valid & self.cmd.ready
        m.d.comb += [
            self.cmd.ready.eq(~biases.busy & ~weights.busy),
            biases.start.eq(start), weights.start.eq(start),
            biases.base.eq(cmd.slot * img.slot_wide_words + 1),    # word 0 is the header
            biases.count.eq(cmd.tiles),
            weights.base.eq(cmd.slot * img.slot_weight_words),
            weights.count.eq(cmd.words),
            biases.repeats.eq(token_tiles), weights.repeats.eq(token_tiles),
            self.done.eq(weights.done),
        ]
        return m
