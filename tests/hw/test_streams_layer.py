"""Proof of the shared stream layer (``tests/hw/streams.py``) and runner (``tests/hw/runner.py``).

Two halves:

* cocotb benches on the test-only :class:`tests.hw.stream_fifo.StreamFifo` (built with Verilator
  through the runner): thousands of items under random valid gaps and back-pressure, full-rate
  latency/throughput, and a reset in the middle of the stream; the scoreboard proves every item
  came out once, in order, unchanged.
* plain pytest tests of what needs no simulator: pack/unpack against Amaranth's own layout
  encoding, the patterns, and the scoreboard catching a dropped, a duplicated, a changed and an
  extra item.
"""

from __future__ import annotations

import itertools
import random

import cocotb
import pytest
from amaranth import signed, unsigned
from amaranth.lib import data

from moeaccel import config
from tests.hw import runner
from tests.hw.stream_fifo import TAG_BITS, StreamFifo, item_layout
from tests.hw.streams import (Beat, Bench, Scoreboard, always, bursty, latency, pack, plain,
                              random_pattern, throughput, unpack)

STRESS_ITEMS = 3000


def make_items(cfg, count: int, seed: int, first_tag: int = 0) -> list[dict]:
    """Items with random vectors, a third of them at the signed extremes."""
    rng = random.Random(seed)
    cu = cfg.hardware.compute_unit
    low, high = -(1 << (cu.operand_bits - 1)), (1 << (cu.operand_bits - 1)) - 1

    def lane() -> int:
        return rng.choice((low, high, 0, -1)) if rng.random() < 0.33 else rng.randint(low, high)

    return [{"tag": (first_tag + n) % (1 << TAG_BITS),
             "vec": [lane() for _ in range(cu.cols)],
             "last": int(n % 7 == 6)} for n in range(count)]


# --------------------------------------------------------------------------------------------
# cocotb benches
# --------------------------------------------------------------------------------------------
def fifo_bench(dut, idle, backpressure):
    """A bench whose reference model for the FIFO is the identity on accepted items."""
    tb = Bench(dut)
    cfg = tb.config()
    src = tb.source("i", item_layout(cfg), idle=idle)
    snk = tb.sink("o", item_layout(cfg), backpressure=backpressure)
    sb = tb.scoreboard("o", snk)
    src.on_accept(sb.expect)
    return tb, cfg, src, snk, sb


PATTERNS = {
    "full": (always, always),
    "random": (lambda: random_pattern(0.6, seed=11), lambda: random_pattern(0.5, seed=12)),
    "bursty": (lambda: bursty(seed=13, max_stall=8), lambda: bursty(seed=14, max_stall=40)),
    "starved": (lambda: random_pattern(0.1, seed=15), always),
}


@cocotb.test()
@cocotb.parametrize(pattern=list(PATTERNS))
async def fifo_stress(dut, pattern: str):
    """Thousands of items through the FIFO under each valid/ready pattern: nothing lost."""
    idle, backpressure = PATTERNS[pattern]
    tb, cfg, src, snk, sb = fifo_bench(dut, idle(), backpressure())
    await tb.reset()
    items = make_items(cfg, STRESS_ITEMS, seed=len(pattern))
    await src.send(items)
    await snk.wait_for(len(items))
    await tb.cycles(20)                        # nothing more may come out
    sb.check()
    assert snk.items == items
    assert sb.matched == len(items) and snk.count == len(items)
    tb.log.info("%s: %s; sink throughput %.3f", pattern, sb.summary(), throughput(snk.beats))


@cocotb.test()
async def fifo_full_rate(dut):
    """Always valid, always ready: 1 item per cycle, latency as the FIFO documents."""
    tb, cfg, src, snk, sb = fifo_bench(dut, always(), always())
    await tb.reset()
    items = make_items(cfg, 200, seed=3)
    await src.send(items)
    await snk.wait_for(len(items))
    sb.check()
    assert throughput(src.beats) == 1.0
    assert throughput(snk.beats) == 1.0
    assert latency(src.beats, snk.beats) == StreamFifo.LATENCY
    assert [b.cycle - a.cycle for a, b in zip(src.beats, snk.beats)] == \
        [StreamFifo.LATENCY] * len(items)


@cocotb.test()
async def fifo_reset_mid_stream(dut):
    """Reset while items are queued, held at the source and inside the FIFO, then carry on."""
    tb, cfg, src, snk, sb = fifo_bench(dut, random_pattern(0.8, seed=21),
                                       random_pattern(0.3, seed=22))
    await tb.reset()
    first = make_items(cfg, 2000, seed=4)
    src.extend(first)
    await snk.wait_for(100)
    await tb.reset(3)
    assert not src.busy and src.dropped > 0, "the reset must hit items waiting at the source"
    assert sb.flushed > 0, "the reset must hit items inside the FIFO"
    before = snk.count
    assert snk.items == first[:before]         # what came out before reset is a clean prefix
    assert src.count == before + sb.flushed     # accepted = delivered + lost inside the DUT
    await tb.cycles(10)
    assert snk.count == before, "nothing may come out of a FIFO that was just reset"

    second = make_items(cfg, 1000, seed=5, first_tag=5000)
    await src.send(second)
    await snk.wait_for(before + len(second))
    await tb.cycles(20)
    sb.check()
    assert snk.items[before:] == second
    tb.log.info("reset mid-stream: %d delivered before, %d flushed in the FIFO, %d dropped at "
                "the source; %s", before, sb.flushed, src.dropped, sb.summary())


@cocotb.test()
async def scoreboard_catches_faults(dut):
    """In simulation, models that disagree with the FIFO by one item are each caught.

    One stream, four scoreboards on the same sink: the exact model passes; a model that changes
    one lane, one that omits an item (as if the DUT duplicated one) and one that doubles an item
    (as if the DUT dropped one) each fail ``check()`` naming the item.
    """
    tb, cfg, src, snk, exact = fifo_bench(dut, random_pattern(0.7, seed=31),
                                          random_pattern(0.7, seed=32))
    changed, extra, missing = (tb.scoreboard(name, snk) for name in ("changed", "extra",
                                                                      "missing"))

    def faulty_models(item):
        if item["tag"] == 100:
            changed.expect({**item, "vec": [item["vec"][0] ^ 1, *item["vec"][1:]]})
        else:
            changed.expect(item)
        if item["tag"] != 50:
            extra.expect(item)
        missing.expect(item)
        if item["tag"] == 70:
            missing.expect(item)

    src.on_accept(faulty_models)
    await tb.reset()
    items = make_items(cfg, 300, seed=6)
    await src.send(items)
    await snk.wait_for(len(items))
    await tb.cycles(10)
    exact.check()
    for board, expected_text in ((changed, "item 100: expected"), (extra, "item 50: expected"),
                                 (missing, "item 71: expected")):
        try:
            board.check()
        except AssertionError as err:
            assert expected_text in str(err), str(err)
        else:
            raise AssertionError(f"scoreboard {board.name} missed the fault")


# --------------------------------------------------------------------------------------------
# pytest entry point: build the FIFO for the config and run the benches above
# --------------------------------------------------------------------------------------------
def test_stream_fifo(hw_config):
    runner.run_component("stream_fifo", lambda: StreamFifo(config.load(hw_config)), __name__,
                         key=hw_config, cfg_name=hw_config, seed=1)


def test_runner_fails_when_no_cocotb_test_ran(hw_config):
    with pytest.raises(AssertionError, match="no cocotb test ran"):
        runner.run_component("stream_fifo", lambda: StreamFifo(config.load(hw_config)),
                             __name__, key=hw_config, cfg_name=hw_config,
                             testcase="no_such_test")


# --------------------------------------------------------------------------------------------
# plain Python: pack/unpack, patterns, scoreboard
# --------------------------------------------------------------------------------------------
NESTED = data.StructLayout({
    "a": unsigned(3),
    "v": data.ArrayLayout(signed(8), 3),
    "s": data.StructLayout({"x": signed(5), "y": unsigned(1)}),
    "m": data.ArrayLayout(data.ArrayLayout(signed(4), 2), 2),
})


def random_value(layout, rng: random.Random):
    if isinstance(layout, data.StructLayout):
        return {name: random_value(field.shape, rng) for name, field in layout}
    if isinstance(layout, data.ArrayLayout):
        return [random_value(layout.elem_shape, rng) for _ in range(layout.length)]
    shape = layout
    if shape.signed:
        return rng.randint(-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1)
    return rng.randint(0, (1 << shape.width) - 1)


@pytest.mark.parametrize("layout", [NESTED, item_layout(config.load("tiny")), signed(8),
                                    data.ArrayLayout(unsigned(1), 5)], ids=str)
def test_pack_matches_amaranth_encoding(layout):
    rng = random.Random(0)
    for _ in range(300):
        value = random_value(layout, rng)
        bits = pack(layout, value)
        if isinstance(layout, data.Layout):
            assert bits == layout.const(value).as_bits()
        assert unpack(layout, bits) == value


def test_pack_extremes_and_sign_extension():
    layout = data.ArrayLayout(signed(8), 2)
    assert pack(layout, [-128, 127]) == 0x7F80
    assert unpack(layout, 0x7F80) == [-128, 127]
    assert unpack(layout, 0xFFFF) == [-1, -1]
    assert unpack(unsigned(8), 0x1FF) == 0xFF            # bits above the width are ignored


@pytest.mark.parametrize("value, problem", [
    ({"tag": 1, "vec": [0, 0, 0, 0], "last": 2}, "does not fit"),
    ({"tag": 1, "vec": [0, 0, 0, -129], "last": 0}, "does not fit"),
    ({"tag": 1, "vec": [0, 0, 0], "last": 0}, "expected 4 elements"),
    ({"tag": 1, "vec": [0, 0, 0, 0]}, "missing field 'last'"),
    ({"tag": 1, "vec": [0, 0, 0, 0], "last": 0, "bogus": 1}, "unknown field"),
])
def test_pack_rejects_bad_values(value, problem):
    with pytest.raises(ValueError, match=problem):
        pack(item_layout(config.load("tiny")), value)


def test_pack_accepts_numpy():
    np = pytest.importorskip("numpy")
    layout = data.ArrayLayout(signed(8), 3)
    assert pack(layout, np.array([-1, 2, -128], dtype=np.int8)) == pack(layout, [-1, 2, -128])
    assert plain({"v": np.array([1, 2]), "x": np.int16(3)}) == {"v": [1, 2], "x": 3}


def test_patterns():
    assert list(itertools.islice(always(), 5)) == [True] * 5
    sample = list(itertools.islice(random_pattern(0.25, seed=1), 4000))
    assert 0.2 < sum(sample) / len(sample) < 0.3
    assert sample == list(itertools.islice(random_pattern(0.25, seed=1), 4000))
    runs = [(key, len(list(group)))
            for key, group in itertools.groupby(itertools.islice(bursty(2, max_stall=50), 5000))]
    stalls = [n for key, n in runs if not key]
    assert max(stalls) <= 50 and max(stalls) > 30   # long stalls happen, bounded
    with pytest.raises(ValueError):
        next(random_pattern(0.0, seed=1))


def fed(expected, observed) -> Scoreboard:
    board = Scoreboard("t")
    board.expect_all(expected)
    for item in observed:
        board.observe(item)
    return board


def test_scoreboard_passes_exact_stream():
    board = fed(range(100), range(100))
    board.check()
    assert (board.expected, board.received, board.matched) == (100, 100, 100)


def test_scoreboard_order_of_expect_and_observe_within_a_cycle_does_not_matter():
    board = Scoreboard("t")
    board.observe({"v": [1]})
    board.expect({"v": (1,)})
    board.check()


def test_scoreboard_catches_dropped_item():
    board = fed(range(10), [0, 1, 2, 4, 5, 6, 7, 8, 9])
    with pytest.raises(AssertionError) as err:
        board.check()
    text = str(err.value)
    assert "item 3: expected 3, got 4" in text and "dropped" in text
    assert "missing" in text and board.pending == 1


def test_scoreboard_catches_duplicated_item():
    board = fed(range(10), [0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9])
    with pytest.raises(AssertionError) as err:
        board.check()
    text = str(err.value)
    assert "item 3: expected 3, got 2" in text and "duplicated" in text
    assert "extra item 10: 9" in text


def test_scoreboard_catches_changed_and_extra_items():
    with pytest.raises(AssertionError, match=r"item 1: expected \[1, 2\], got \[1, 3\]"):
        fed([[0, 0], [1, 2]], [[0, 0], [1, 3]]).check()
    with pytest.raises(AssertionError, match="extra item 2"):
        fed([0, 1], [0, 1, 2]).check()
    with pytest.raises(AssertionError, match="missing"):
        fed([0, 1, 2], [0, 1]).check()


def test_scoreboard_flush_forgets_expectations_lost_to_reset():
    board = fed(range(5), range(3))
    assert board.flush() == 2
    board.expect_all([10, 11])
    board.observe(10)
    board.observe(11)
    board.check()
    assert board.flushed == 2 and board.matched == 5


def test_scoreboard_custom_compare():
    board = Scoreboard("t", compare=lambda e, g: abs(e - g) <= 1)
    board.expect_all([10, 20])
    board.observe(11)
    board.observe(19)
    board.check()


def test_latency_and_throughput():
    ins = [Beat(c, None) for c in (5, 6, 7, 8)]
    outs = [Beat(c, None) for c in (9, 11, 13, 15)]
    assert latency(ins, outs) == 4
    assert throughput(ins) == 1.0
    assert throughput(outs) == 0.5
    assert throughput(outs, skip=1) == 0.5
