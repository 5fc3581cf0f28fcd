"""The engine's on-chip weight buffer: two ping/pong slots, each holding one weight block
(:mod:`moeaccel.weight_image`), filled from DRAM by :class:`hw.weight_fetch.WeightFetch` and replayed
into the compute unit by :class:`hw.weight_stream.WeightStream`."""

from __future__ import annotations

from amaranth import Module, Shape, Value
from amaranth.lib import wiring

from hw.banked_memory import READ_STAGES, BankedMemory
from hw.block_ram import BlockRam
from hw.compute_unit_layouts import Layouts
from hw.weight_fetch import WeightFetch
from moeaccel.weight_image import ImageLayout, buffer_slots, slot_bytes
from hw.weight_stream import WeightStream
from moeaccel.config import DesignConfig
from sim.timing.weight_stream import BIAS_READ_STAGES, WEIGHT_READ_STAGES


def buffer_bytes(cfg: DesignConfig) -> int:
    """On-chip bytes of the buffer (:func:`moeaccel.weight_image.buffer_slots` slots)."""
    return buffer_slots(cfg) * slot_bytes(cfg)


class WeightBuffer(wiring.Component):
    """:func:`moeaccel.weight_image.buffer_slots` slots (2: ping/pong, or 1 when two do not fit
    ``buffers.weight_bytes``) of ``slot_wide_words`` header+bias words of ``cols`` int32 and
    ``slot_weight_words`` weight words of ``cols`` int8; slot ``s`` occupies words
    ``s * slot_words ..``. The fetcher writes one slot while the streamer reads the other
    (the engine's controller guarantees a slot is not refilled before its ``streamed`` pulse).

    Timing: the fetcher's writes are registered before the memories (its address arithmetic
    and the weight memory's bank decode are a cycle each), so a word lands one cycle after the
    fetcher writes it, which is the cycle ``fetched`` pulses for the last word: a slot streamed
    from the cycle after ``fetched`` reads the new block. The weight memory is a
    :class:`hw.banked_memory.BankedMemory` (read in ``WEIGHT_READ_STAGES`` cycles), the
    header+bias memory a :class:`hw.block_ram.BlockRam` read in ``BIAS_READ_STAGES`` (2)
    cycles: on ECP5 block RAMs with their output register (a ``cols`` x int32 word is too wide
    for LUT RAM: 16 lanes took ~1,000 LUT4 of distributed RAM and its read multiplexers),
    elsewhere a memory and two registers.

    Members: ``fetch_cmd``, ``dram_req``, ``dram_data``, ``header``, ``fetched``, ``fetch_busy``
    of :class:`WeightFetch` (``fetched`` = its ``done``); ``stream_cmd``, ``bias``, ``weight``,
    ``streamed`` of :class:`WeightStream` (``streamed`` = its ``done``).
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self._fetch, self._stream = WeightFetch(cfg), WeightStream(cfg)
        f, s = self._fetch.signature.members, self._stream.signature.members
        super().__init__({
            "fetch_cmd": f["cmd"], "dram_req": f["dram_req"], "dram_data": f["dram_data"],
            "header": f["header"], "fetched": f["done"], "fetch_busy": f["busy"],
            "stream_cmd": s["cmd"], "bias": s["bias"], "weight": s["weight"],
            "streamed": s["done"],
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        img, lay, slots = ImageLayout.of(self.cfg), Layouts(self.cfg), buffer_slots(self.cfg)
        m.submodules.fetch = fetch = self._fetch
        m.submodules.stream = strm = self._stream
        m.submodules.wide = wide = BlockRam(width=Shape.cast(lay.bias).width,
                                            depth=slots * img.slot_wide_words,
                                            read_stages=BIAS_READ_STAGES)
        m.submodules.words = words = BankedMemory(shape=lay.weight,
                                                  depth=slots * img.slot_weight_words)
        assert WEIGHT_READ_STAGES == READ_STAGES
        for (wp, rp), wr, rd in (((wide.write, wide.read), fetch.wide_write, strm.wide_read),
                                 ((words.write_port(), words.read_port()), fetch.weight_write,
                                  strm.weight_read)):
            m.d.sync += [wp.en.eq(wr.en), wp.addr.eq(wr.addr), wp.data.eq(wr.data)]
            m.d.comb += [rp.en.eq(rd.en), rp.addr.eq(rd.addr),
                         Value.cast(rd.data).eq(rp.data)]
        for ours, theirs in (("fetch_cmd", fetch.cmd), ("dram_req", fetch.dram_req),
                             ("dram_data", fetch.dram_data), ("stream_cmd", strm.cmd),
                             ("bias", strm.bias), ("weight", strm.weight)):
            wiring.connect(m, wiring.flipped(getattr(self, ours)), theirs)
        m.d.comb += [self.header.eq(fetch.header), self.fetched.eq(fetch.done),
                     self.fetch_busy.eq(fetch.busy), self.streamed.eq(strm.done)]
        return m
