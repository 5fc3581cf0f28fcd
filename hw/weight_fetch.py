"""The weight fetcher: one weight block (:mod:`moeaccel.weight_image`) from a DRAM read port into a
ping/pong slot of the engine's weight buffer (:class:`hw.weight_buffer.WeightBuffer`)."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from moeaccel.weight_image import HEADER_FIELDS, ImageLayout
from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError
from sim.timing.weight_fetch import port_bytes  # noqa: F401  (bytes per DRAM beat)




class DramLayouts:
    """Payloads of the DRAM read port (the engine is the requester).

    * ``request``: ``addr`` (byte address, a multiple of the port width) and ``beats`` (data beats
      to return, ``port_bytes`` each, consecutive addresses);
    * ``response``: ``data``, ``port_bytes`` bytes, byte ``i`` (address ``addr + i``) in bits
      ``8i..8i+7``. Beats come back in order, any number of cycles apart.
    """

    def __init__(self, cfg: DesignConfig):
        lay = ImageLayout.of(cfg)
        self.request = data.StructLayout({
            "addr": unsigned(max(1, bits_for(lay.total_bytes))),
            "beats": unsigned(bits_for(max(b.bytes for b in (lay.gate, lay.w1, lay.w2)))),
        })
        self.response = data.StructLayout({"data": unsigned(8 * port_bytes(cfg))})


class FetchLayouts:
    """``command``: fetch the block at byte ``addr`` (``wide`` header + bias words, ``words``
    weight words) into ping/pong ``slot``. ``header``: one slot's header fields."""

    def __init__(self, cfg: DesignConfig):
        lay = ImageLayout.of(cfg)
        dram = DramLayouts(cfg)
        self.command = data.StructLayout({
            "addr": dram.request["addr"].shape,
            "wide": unsigned(bits_for(lay.slot_wide_words)),
            "words": unsigned(bits_for(lay.slot_weight_words)),
            "slot": 1,
        })
        self.header = data.StructLayout({name: unsigned(32) for name in HEADER_FIELDS})


class WeightFetch(wiring.Component):
    """Fetches one block per command: one DRAM request for the whole block, then the response
    beats assembled into wide words (``4*cols`` bytes: header, then biases) and weight words
    (``cols`` bytes) written to the buffer memories at ``slot * slot_words + index``; the header
    is also latched into ``header[slot]``. ``done`` pulses the cycle after the last word is
    written; the next command is accepted then.

    Timing: the request is offered the cycle after the command; every response beat is taken the
    cycle it is valid (``dram_data.ready`` is high while fetching); ``busy`` lasts ``L + beats``
    cycles when the first beat arrives ``L`` cycles after the request and the rest back to back
    (``L`` = the config's ``latency_cycles`` with ``moeaccel.benches.dram.DramModel``).

    Members
    -------
    cmd : In(stream of ``FetchLayouts.command``)
    dram_req : Out(stream of ``DramLayouts.request``)
    dram_data : In(stream of ``DramLayouts.response``)
    header : Out(ArrayLayout(FetchLayouts.header, 2)), per slot
    done : Out(1), pulse
    busy : Out(1), a fetch is in progress (from the command to ``done``)
    wide_write, weight_write : Out, memory write ports (``en``, ``addr``, ``data``)
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        cols = cfg.hardware.compute_unit.cols
        self.image = lay = ImageLayout.of(cfg)
        self.layouts = FetchLayouts(cfg)
        dram = DramLayouts(cfg)
        if cols % port_bytes(cfg) or cols < len(HEADER_FIELDS):
            raise ConfigError("hardware.dram.bytes_per_cycle",
                              f"the MoE engine's DRAM port ({port_bytes(cfg)} bytes) must divide "
                              f"compute_unit.cols ({cols}), and cols must be >= 4")

        def write_port(words: int, bits: int):
            return Out(wiring.Signature({"en": Out(1), "addr": Out(range(2 * words)),
                                         "data": Out(bits)}))
        super().__init__({
            "cmd": In(stream.Signature(self.layouts.command)),
            "dram_req": Out(stream.Signature(dram.request)),
            "dram_data": In(stream.Signature(dram.response)),
            "header": Out(data.ArrayLayout(self.layouts.header, 2)),
            "done": Out(1),
            "busy": Out(1),
            "wide_write": write_port(lay.slot_wide_words, 32 * cols),
            "weight_write": write_port(lay.slot_weight_words, 8 * cols),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cols, width = self.cfg.hardware.compute_unit.cols, port_bytes(self.cfg)
        lay = self.image
        wide_beats, word_beats = 4 * cols // width, cols // width

        busy = Signal()
        asking, receiving = Signal(), Signal()    # request offered / response beats taken
        # ~receiving, for the assembler's enables (its many loads kept off the control logic's
        # path; stored inverted so that synthesis keeps it apart from ``receiving``)
        not_receiving = Signal(init=1)
        command = Signal(self.layouts.command, reset_less=True)
        wide_index = Signal(range(lay.slot_wide_words + 1), reset_less=True)
        word_index = Signal(range(lay.slot_weight_words + 1), reset_less=True)
        beat = Signal(range(wide_beats), reset_less=True)
        word = Signal(32 * cols, reset_less=True)  # assembler: beats shift in at the top
        # Every decision on a response beat reads registers only: where the assembly is
        # (``in_wide``: header/bias words, else weight words; ``first_wide``), whether this beat
        # completes a word (``beat_last``) and whether that word is the block's last of its kind
        # (``last_wide``, ``last_word``) are flags updated with the counters, each from a
        # compare with a bound registered at the command (``wide - 2``, ``words - 2``).
        in_wide, first_wide, beat_last = Signal(reset_less=True), Signal(reset_less=True), \
            Signal(reset_less=True)
        last_wide, last_word, no_words = Signal(reset_less=True), Signal(reset_less=True), \
            Signal(reset_less=True)
        wide_m2 = Signal(len(command.wide) + 1, reset_less=True)
        words_m2 = Signal(len(command.words) + 1, reset_less=True)
        words_m3 = Signal(len(command.words) + 1, reset_less=True)
        # The index compares themselves are registers refreshed every cycle, so that a beat's
        # take (the DRAM's valid) reaches the flags through their enables only, never through a
        # compare tree: ``wide_hit`` = ``wide_index == wide - 2`` (a wide word takes
        # ``wide_beats`` >= 4 beats, so the index has been stable for a cycle when it is
        # used); a weight word can complete every cycle, so ``word_hit`` is the compare of the
        # previous cycle's index, or of the index before it incremented (``words - 3``) when a
        # weight word was written the previous cycle (``word_step``).
        wide_hit, word_hit, word_hit_next = (Signal(reset_less=True) for _ in range(3))
        word_step = Signal()
        m.d.comb += self.busy.eq(busy)

        m.d.comb += [
            self.cmd.ready.eq(~busy),
            self.dram_req.valid.eq(asking),
            self.dram_req.p.addr.eq(command.addr),
            self.dram_req.p.beats.eq(command.wide * wide_beats + command.words * word_beats),
            self.dram_data.ready.eq(receiving),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            p = self.cmd.p
            m.d.sync += [busy.eq(1), asking.eq(1), command.eq(p), wide_index.eq(0),
                         word_index.eq(0), beat.eq(0),
                         in_wide.eq(p.wide != 0), first_wide.eq(1),
                         beat_last.eq(Mux(p.wide != 0, wide_beats == 1, word_beats == 1)),
                         last_wide.eq(p.wide == 1), last_word.eq(p.words == 1),
                         no_words.eq(p.words == 0),
                         wide_m2.eq(p.wide - 2), words_m2.eq(p.words - 2),
                         words_m3.eq(p.words - 3)]
        with m.If(self.dram_req.valid & self.dram_req.ready):
            m.d.sync += [asking.eq(0), receiving.eq(1), not_receiving.eq(0)]

        assembled = Signal(32 * cols)
        m.d.comb += assembled.eq(Cat(word[8 * width:], self.dram_data.p.data))
        m.d.comb += [
            self.wide_write.addr.eq(command.slot * lay.slot_wide_words + wide_index),
            self.wide_write.data.eq(assembled),
            self.weight_write.addr.eq(command.slot * lay.slot_weight_words + word_index),
            self.weight_write.data.eq(assembled[-8 * cols:]),
        ]

        def second_last(beats: int):               # beat == beats - 2
            return beat == beats - 2 if beats >= 2 else 0

        m.d.sync += [self.done.eq(0), word_step.eq(0),
                     wide_hit.eq(wide_index == wide_m2), word_hit.eq(word_index == words_m2),
                     word_hit_next.eq(word_index == words_m3)]
        word_last = Mux(word_step, word_hit_next, word_hit)     # word_index == words - 2
        with m.If(self.dram_data.valid & ~not_receiving):     # = the take below
            m.d.sync += word.eq(assembled)
        with m.If(self.dram_data.valid & self.dram_data.ready):
            m.d.sync += [beat.eq(beat + 1),
                         beat_last.eq(Mux(in_wide, second_last(wide_beats),
                                          second_last(word_beats)))]
            with m.If(beat_last):
                m.d.sync += [beat.eq(0), beat_last.eq(word_beats == 1)]
                with m.If(in_wide):
                    m.d.comb += self.wide_write.en.eq(1)
                    m.d.sync += [wide_index.eq(wide_index + 1), first_wide.eq(0),
                                 last_wide.eq(wide_hit)]
                    with m.If(~last_wide):              # another wide word follows
                        m.d.sync += beat_last.eq(wide_beats == 1)
                    with m.Else():
                        m.d.sync += in_wide.eq(0)
                    with m.If(first_wide):
                        for s in range(2):
                            with m.If(command.slot == s):
                                m.d.sync += self.header[s].eq(assembled[:32 * len(HEADER_FIELDS)])
                    with m.If(last_wide & no_words):
                        m.d.sync += [busy.eq(0), receiving.eq(0), not_receiving.eq(1),
                                     self.done.eq(1)]
                with m.Else():
                    m.d.comb += self.weight_write.en.eq(1)
                    m.d.sync += [word_index.eq(word_index + 1), word_step.eq(1),
                                 last_word.eq(word_last)]
                    with m.If(last_word):
                        m.d.sync += [busy.eq(0), receiving.eq(0), not_receiving.eq(1),
                                     self.done.eq(1)]
        return m
