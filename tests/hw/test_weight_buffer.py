"""hw/weight_buffer.py (fetcher + ping/pong slots + streamer) on Verilator: random weight blocks
(:mod:`moeaccel.weight_image` layout) fetched from the DRAM model (latency, limited bandwidth, random
stalls) into alternating slots while the previous slot streams, every ``bias``/``weight`` beat
compared with the compute unit's tile order, under random back-pressure, with each slot's
header checked.

Run: ``python -m pytest tests/hw/test_weight_buffer.py -q``.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.compute_unit_layouts import Layouts
from hw.weight_buffer import WeightBuffer
from hw.weight_fetch import FetchLayouts
from moeaccel.weight_image import BlockShape, ImageLayout, block_bytes
from hw.weight_stream import command_layout, pass_flags
from moeaccel import config
from sim.timing import weight_stream
from moeaccel.benches.dram import DramModel
from tests.hw import runner
from tests.hw.streams import Bench, random_pattern, unpack


def random_blocks(cfg, rng, count: int):
    """``count`` random blocks that fit a slot: (shape, w, b, header, bytes)."""
    img, cols = ImageLayout.of(cfg), cfg.hardware.compute_unit.cols
    blocks = []
    for _ in range(count):
        tiles = int(rng.integers(1, img.slot_wide_words))
        k = int(rng.integers(1, img.slot_weight_words // tiles + 1))
        n = int(rng.integers((tiles - 1) * cols + 1, tiles * cols + 1))
        shape = BlockShape(k, n, cols)
        w = rng.integers(-128, 128, (k, n))
        b = rng.integers(-2**31, 2**31, n)
        header = tuple(int(v) for v in rng.integers(0, 2**31, 4))
        blocks.append((shape, w, b, header, block_bytes(w, b, header, shape)))
    return blocks


@cocotb.test()
async def blocks_fetched_and_streamed(dut):
    tb = Bench(dut)
    cfg = tb.config()
    cols, rows = cfg.hardware.compute_unit.cols, cfg.hardware.compute_unit.rows
    rng = np.random.default_rng(41)
    blocks = random_blocks(cfg, rng, 12)
    offsets = np.cumsum([0] + [len(b[4]) for b in blocks]).tolist()
    image = b"".join(b[4] for b in blocks)
    DramModel(tb, cfg, image, latency=2 * cfg.hardware.dram.latency_cycles,
              bytes_per_cycle=cfg.hardware.dram.bytes_per_cycle * 0.7, stall_p=0.05, seed=42)
    lay = Layouts(cfg)
    fetch = tb.source("fetch_cmd", FetchLayouts(cfg).command)
    stream = tb.source("stream_cmd", command_layout(cfg))
    bias_sb = tb.scoreboard("bias", tb.sink("bias", lay.bias, random_pattern(0.6, seed=43)))
    weight_snk = tb.sink("weight", lay.weight, random_pattern(0.8, seed=44))
    weight_sb = tb.scoreboard("weight", weight_snk)
    header_layout = FetchLayouts(cfg).header
    fetched = streamed = 0
    first_weight: list[int] = []     # cycles from each stream command to its first weight beat

    async def count_pulses():
        nonlocal fetched, streamed
        cycle, since = 0, None
        while True:
            await RisingEdge(tb.clk)
            cycle += 1
            fetched += int(dut.fetched.value)
            streamed += int(dut.streamed.value)
            if since is not None and int(dut.weight__valid.value):
                first_weight.append(cycle - since)
                since = None
            if int(dut.stream_cmd__valid.value) and int(dut.stream_cmd__ready.value):
                since = cycle

    async def until(predicate):
        for _ in range(100_000):
            if predicate():
                return
            await RisingEdge(tb.clk)
        raise AssertionError("timed out")

    await tb.reset()
    cocotb.start_soon(count_pulses())

    def fetch_cmd(i):
        shape = blocks[i][0]
        fetch.append({"addr": offsets[i], "wide": shape.wide_words, "words": shape.weight_words,
                      "slot": i % 2})

    fetch_cmd(0)
    for i, (shape, w, b, header, _) in enumerate(blocks):
        await until(lambda: fetched > i)
        got = unpack(header_layout, (int(dut.header.value) >> (i % 2) * header_layout.size)
                     & ((1 << header_layout.size) - 1))
        assert list(got.values()) == list(header), (i, got, header)
        if i + 1 < len(blocks):
            fetch_cmd(i + 1)                  # prefetch into the other slot while i streams
        m = int(rng.integers(1, 3 * rows + 1))
        wp = np.zeros((shape.k, shape.tiles * cols), dtype=np.int64)
        wp[:, :shape.n] = w
        bp = np.zeros(shape.tiles * cols, dtype=np.int64)
        bp[:shape.n] = b
        for _ in range(-(-m // rows)):
            for j in range(shape.tiles):
                bias_sb.expect(bp[j * cols:(j + 1) * cols])
                for kk in range(shape.k):
                    weight_sb.expect(wp[kk, j * cols:(j + 1) * cols])
        one, two = pass_flags(m, rows)
        stream.append({"slot": i % 2, "m": m, "one_pass": int(one), "two_passes": int(two),
                       "tiles": shape.tiles, "words": shape.weight_words})
        await until(lambda: streamed > i)
    assert weight_sb.pending == 0 and bias_sb.pending == 0
    # the read stages of sim.timing.weight_stream: the first weight beat of every command
    assert first_weight == [weight_stream.latency(cfg)] * len(blocks), first_weight
    bias_sb.check()
    weight_sb.check()
    tb.log.info("%d blocks: %s; %s", len(blocks), bias_sb.summary(), weight_sb.summary())


def test_weight_buffer():
    cfg = config.load("tiny")
    runner.run_component("weight_buffer_tiny", lambda: WeightBuffer(cfg), __name__, key="tiny",
                         cfg_name="tiny")
