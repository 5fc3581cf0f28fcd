"""The weight streamer: replays one ping/pong slot of the weight buffer into the compute unit's
``bias`` and ``weight`` streams in its tile order (token tiles outer, output tiles inner)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from hw.compute_unit_layouts import Layouts
from moeaccel.weight_image import ImageLayout
from moeaccel.config import DesignConfig
from sim.timing.weight_stream import BIAS_READ_STAGES, WEIGHT_READ_STAGES


def command_layout(cfg: DesignConfig) -> data.StructLayout:
    """``slot``; ``m`` tokens of the GEMM (token tiles of ``rows``); ``one_pass`` /
    ``two_passes``: ``m`` fills exactly one / two token tiles (flags the issuer registers beside
    ``m``, so no compare of ``m`` sits in front of the replays' pass registers); ``tiles``
    output tiles and ``words`` = ``tiles * k`` weight words of the block in the slot."""
    lay = ImageLayout.of(cfg)
    return data.StructLayout({
        "slot": 1, "m": Layouts(cfg).command["m"].shape, "one_pass": 1, "two_passes": 1,
        "tiles": unsigned(bits_for(lay.slot_wide_words)),
        "words": unsigned(bits_for(lay.slot_weight_words)),
    })


def pass_flags(m, rows: int):
    """The command's (``one_pass``, ``two_passes``) for ``m`` tokens in token tiles of
    ``rows``: ints or Amaranth values (the issuer registers them)."""
    if rows == 1:
        return m == 1, m == 2
    return (m >= 1) & (m <= rows), (m > rows) & (m <= 2 * rows)


class _Replay(wiring.Component):
    """``repeats`` passes over words ``base .. base+count-1`` of a memory read port
    (``addr``/``en``/``data`` driven here) whose data follows the address after ``read_stages``
    enabled cycles, as a stream: one word per cycle when ready (back-pressure stalls every
    read stage); ``start`` (a pulse while not ``busy``) latches the parameters (with
    ``repeats_one`` / ``repeats_two``, ``repeats == 1`` / ``== 2`` from the issuer's registers);
    ``done`` pulses when the final beat is taken.

    Timing structure: ``o.ready`` (a consumer's registered ready, e.g. a skid buffer's) reaches
    two ``advance`` terms built from two flip-flops of the output's valid bit (``o.valid`` and
    its complement ``idle``, so synthesis keeps both): the memory's read enables (a register
    as wide as the word) hang on one, the read stages' valid bits and a one-entry address skid
    register on the other, never the position counters. The counters step whenever the skid
    (``pending``) is empty, a flip-flop: a position stepped while the read stages stall is kept
    there and read next (the read address is the skid's while it is full, else the counters'),
    and no position is stepped until it has been. The memory sees the same addresses in the
    same cycles as counters stepped by ``advance`` directly, and ``busy`` (stepping or one
    kept) falls in the same cycle, so the skid costs no cycle. Every compare the counters need
    (end of pass, last pass, ``count == 1``) is a register."""

    def __init__(self, shape, depth: int, count_shape, repeats_shape, read_stages: int = 1):
        self.read_stages = read_stages
        super().__init__({
            "start": In(1), "base": In(range(depth)), "count": In(count_shape),
            "repeats": In(repeats_shape), "repeats_one": In(1), "repeats_two": In(1),
            "o": Out(stream.Signature(shape)),
            "rd_addr": Out(range(depth)), "rd_en": Out(1), "rd_data": In(shape),
            "done": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        busy, last_r = Signal(), Signal(reset_less=True)
        # the parameters and the position: meaningful only while ``busy`` (reset-less)
        base = Signal.like(self.base, reset_less=True)
        addr = Signal.like(self.rd_addr, reset_less=True)      # the next read's address
        end_addr = Signal(len(self.rd_addr) + 1, reset_less=True)   # base + count - 2
        left = Signal.like(self.repeats, reset_less=True)      # passes left
        # registered compares: addr == base + count - 1, left == 1, count == 1, left == 2
        at_end, last_pass = Signal(reset_less=True), Signal(reset_less=True)
        one_beat, two_left = Signal(reset_less=True), Signal(reset_less=True)
        idle = Signal(init=1)                                  # ~o.valid, for the read enables
        advance = ~self.o.valid | self.o.ready                 # the read stages'
        # the address skid: a position stepped while the read stages stall, and its ``final``
        pending, pending_valid = Signal.like(addr), Signal()
        pending_final = Signal(reset_less=True)
        final = at_end & last_pass
        # ``step`` is every position register's only enable (no counter is cleared by a
        # compare: the pass restarts by loading ``base``), and reads flip-flops only
        step = Signal()
        m.d.comb += step.eq(busy & ~pending_valid)
        # a read enters the stages when they advance and a position is left (kept or stepped)
        read = Signal()
        m.d.comb += read.eq(advance & (busy | pending_valid))
        # ``busy | pending_valid`` as one flip-flop of its own (``start`` waits on it)
        active = Signal()
        m.d.comb += [self.rd_en.eq(idle | self.o.ready),
                     self.rd_addr.eq(Mux(pending_valid, pending, addr)),
                     self.o.p.eq(self.rd_data), self.busy.eq(active)]
        with m.If(self.start):
            m.d.sync += [busy.eq(1), left.eq(self.repeats), base.eq(self.base),
                         end_addr.eq(self.base + self.count - 2), addr.eq(self.base),
                         one_beat.eq(self.count == 1), at_end.eq(self.count == 1),
                         last_pass.eq(self.repeats_one), two_left.eq(self.repeats_two)]
        with m.If(step):
            m.d.sync += [addr.eq(Mux(at_end, base, addr + 1)),
                         at_end.eq(Mux(at_end, one_beat, addr == end_addr)),
                         pending.eq(addr), pending_final.eq(final)]
            with m.If(at_end):
                m.d.sync += [left.eq(left - 1), last_pass.eq(two_left), two_left.eq(left == 3)]
            with m.If(final):
                m.d.sync += busy.eq(0)
        # next ``busy`` and ``pending_valid``, for ``active``
        busy_next = self.start | (busy & ~(step & final))
        pending_next = ~advance & (pending_valid | step)
        m.d.sync += [pending_valid.eq(pending_next), active.eq(busy_next | pending_next)]
        # (valid, final) of each read stage, the last one being the output beat's
        valids = [Signal(name=f"valid{i}") for i in range(self.read_stages - 1)] + [self.o.valid]
        finals = [Signal(name=f"final{i}", reset_less=True)
                  for i in range(self.read_stages - 1)] + [last_r]
        with m.If(advance):
            m.d.sync += [valids[0].eq(read),
                         finals[0].eq(Mux(pending_valid, pending_final, final))]
            m.d.sync += [v.eq(u) for u, v in zip(valids, valids[1:])]
            m.d.sync += [f.eq(e) for e, f in zip(finals, finals[1:])]
            m.d.sync += idle.eq(~(valids[-2] if self.read_stages > 1 else read))
        m.d.comb += self.done.eq(self.o.valid & self.o.ready & last_r)
        return m


class WeightStream(wiring.Component):
    """Streams the block in ``slot`` for a GEMM of ``m`` tokens: per token tile, the ``tiles``
    bias words (``bias``) and the ``words`` weight words (``weight``), exactly the beats
    :class:`hw.compute_unit.ComputeUnit` takes. Each stream runs one beat per cycle when ready;
    a bias beat is valid ``BIAS_READ_STAGES`` (2) cycles after its read, a weight beat
    ``WEIGHT_READ_STAGES`` (4: the weight memory is a :class:`hw.banked_memory.BankedMemory`)
    cycles after (:mod:`sim.timing.weight_stream`). ``done`` pulses when the final weight beat is taken: the slot may
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
                                               cmd.tiles.shape(), reps,
                                               read_stages=BIAS_READ_STAGES)
        m.submodules.weights = weights = _Replay(Layouts(self.cfg).weight,
                                                 2 * img.slot_weight_words, cmd.words.shape(), reps,
                                                 read_stages=WEIGHT_READ_STAGES)
        for replay, port, out in ((biases, self.wide_read, self.bias),
                                  (weights, self.weight_read, self.weight)):
            wiring.connect(m, replay.o, wiring.flipped(out))
            m.d.comb += [port.addr.eq(replay.rd_addr), port.en.eq(replay.rd_en),
                         replay.rd_data.eq(port.data)]
        # no adder (a carry chain from the controller's command into `last_pass`) for one row
        token_tiles = cmd.m if rows == 1 else (cmd.m + rows - 1) // rows
        start = self.cmd.valid & self.cmd.ready
        m.d.comb += [
            self.cmd.ready.eq(~biases.busy & ~weights.busy),
            biases.start.eq(start), weights.start.eq(start),
            biases.base.eq(cmd.slot * img.slot_wide_words + 1),    # word 0 is the header
            biases.count.eq(cmd.tiles),
            weights.base.eq(cmd.slot * img.slot_weight_words),
            weights.count.eq(cmd.words),
            biases.repeats.eq(token_tiles), weights.repeats.eq(token_tiles),
            biases.repeats_one.eq(cmd.one_pass), weights.repeats_one.eq(cmd.one_pass),
            biases.repeats_two.eq(cmd.two_passes), weights.repeats_two.eq(cmd.two_passes),
            self.done.eq(weights.done),
        ]
        return m
