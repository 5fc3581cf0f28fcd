"""hw/scatter.py on Verilator: scatter-accumulate and read-out bit-exact against
golden/linear.py (``scatter_accumulate``, ``scatter_finalise``), cycles against
sim/timing/scatter.py.

The bench keeps the golden output accumulator ``[tokens, n]``: every accumulate job queues its
command, ``(token, gate)`` entries and the compute unit's output rows (in the unit's tile order,
lanes past ``n`` random garbage) and updates the model with ``scatter_accumulate``; every
read-out expects ``scatter_finalise`` of the model rows and clears them (the hardware clears the
words it reads).

Run: ``python -m pytest tests/hw/test_scatter.py -q``.
"""

from __future__ import annotations

import math

import cocotb
import numpy as np
import pytest

from golden import linear as golden
from golden.fixed import smax, smin
from hw.compute_unit_layouts import Layouts, out_bits
from hw.scatter import ScatterLayouts, memory_words
from sim.timing import scatter as timing
from tests.hw import runner
from tests.hw.streams import Bench, always, bursty, random_pattern


class ScatterBench:
    """Sources, sink, scoreboard and the golden accumulator of one test."""

    def __init__(self, dut, n: int | None = None, idle=None, backpressure=None, seed: int = 0,
                 tb: Bench | None = None, cmd_port: str = "cmd", feed_y: bool = True):
        """``tb``, ``cmd_port`` and ``feed_y=False`` serve a DUT where the scatter block sits
        behind the compute unit (``y`` is internal): tests/hw/test_expert_datapath.py."""
        self.tb = tb or Bench(dut)
        self.cfg = cfg = self.tb.config()
        self.cu = cfg.hardware.compute_unit
        self.one = 1 << cfg.hardware.softmax.prob_frac_bits        # gate 1.0
        lay = ScatterLayouts(cfg)
        pattern = (lambda s: None) if idle is None else idle
        self.cmd = self.tb.source(cmd_port, lay.command, idle=pattern(seed + 1))
        self.route = self.tb.source("route", lay.route, idle=pattern(seed + 2))
        self.y = self.tb.source("y", Layouts(cfg).out, idle=pattern(seed + 3)) if feed_y else None
        self.result = self.tb.sink("result", lay.result, backpressure=backpressure)
        self.sb = self.tb.scoreboard("scatter", self.result, compare=_same_beat)
        self.n = n or cfg.model.embed_dim
        self.words = math.ceil(self.n / self.cu.cols)
        self.tokens = min(cfg.model.tokens, memory_words(cfg) // self.words)
        self.acc = np.zeros((self.tokens, self.n), dtype=np.int64)
        self.garbage = np.random.default_rng(seed + 99)
        self.outputs_compared = 0
        self.rows_accumulated = 0

    def random_y(self, rng, m: int, wide: bool = False) -> np.ndarray:
        """Expert output rows: the operand range, or the whole wide output range."""
        bits = out_bits(self.cfg) if wide else self.cu.operand_bits
        return rng.integers(smin(bits), smax(bits) + 1, (m, self.n))

    def accumulate(self, ids, gates, y: np.ndarray) -> int:
        """Queue one expert's accumulate job (its ``y`` rows too unless the DUT makes them);
        return the number of rows queued on ``y``."""
        cu, rows, cols = self.cu, self.cu.rows, self.cu.cols
        ids, gates = np.asarray(ids), np.asarray(gates)
        m = len(ids)
        self.acc = golden.scatter_accumulate(self.acc, ids, gates, y, self.cfg)
        self.cmd.append({"readout": 0, "m": m, "n": self.n})
        self.route.extend({"token": int(t), "gate": int(g)} for t, g in zip(ids, gates))
        wide = out_bits(self.cfg)
        beats = 0
        for i in range(math.ceil(m / rows) if self.y is not None else 0):
            valid_rows = min(rows, m - i * rows)
            for j in range(self.words):
                for r in range(valid_rows):
                    q = i * rows + r
                    data = self.garbage.integers(smin(wide), smax(wide) + 1, cols)
                    lanes = y[q, j * cols:(j + 1) * cols]
                    data[:len(lanes)] = lanes
                    last = q == m - 1 and j == self.words - 1
                    self.y.append({"data": data.tolist(), "row": q, "last": int(last)})
                    beats += 1
        self.rows_accumulated += beats
        return beats

    def readout(self, tokens: int | None = None) -> int:
        """Queue a read-out of tokens ``0..tokens-1``; expect the finalised model rows and clear
        them. Returns the number of result beats."""
        tokens = self.tokens if tokens is None else tokens
        cols = self.cu.cols
        self.cmd.append({"readout": 1, "m": tokens, "n": self.n})
        final = golden.scatter_finalise(self.acc[:tokens], self.cfg)
        for t in range(tokens):
            for j in range(self.words):
                lanes = final[t, j * cols:(j + 1) * cols].tolist()
                self.sb.expect({"data": lanes + [None] * (cols - len(lanes)), "token": t,
                                "last": int(t == tokens - 1 and j == self.words - 1)})
                self.outputs_compared += len(lanes)
        self.acc[:tokens] = 0
        return tokens * self.words

    def clear_all(self) -> int:
        """Read out (and so clear) every word of the memory, results don't-care (after reset)."""
        depth, cols = memory_words(self.cfg), self.cu.cols
        self.cmd.append({"readout": 1, "m": depth, "n": cols})
        for t in range(depth):
            self.sb.expect({"data": [None] * cols, "token": t, "last": int(t == depth - 1)})
        self.acc[:] = 0
        return depth

    async def finish(self, beats: int) -> None:
        """Wait for ``beats`` more result beats in total, then check the scoreboard."""
        await self.result.wait_for(self.result.count + beats, timeout_cycles=100_000)
        await self.tb.cycles(8)
        self.sb.check()


def _same_beat(expected, got) -> bool:
    return (expected["token"] == got["token"] and expected["last"] == got["last"]
            and all(e is None or e == g for e, g in zip(expected["data"], got["data"])))


def queues(sb: ScatterBench, rng) -> list[np.ndarray]:
    """Expert queues: every token, one token, one token back to back many times, two tokens
    alternating, random with repeats, a tile's worth of one token then others."""
    rows, tokens = sb.cu.rows, sb.tokens
    t, u = rng.choice(tokens, 2, replace=False)
    return [np.arange(tokens), np.array([t]), np.full(2 * rows + 1, t),
            np.array([t, u] * (rows + 1)), rng.integers(tokens, size=3 * rows + 2),
            np.concatenate([np.full(rows, u), rng.integers(tokens, size=rows - 1)])]


def gates_for(sb: ScatterBench, rng, m: int) -> np.ndarray:
    """Random gates with 0 and 1.0 (the maximum) mixed in."""
    g = rng.integers(0, sb.one + 1, m)
    g[rng.random(m) < 0.2] = 0
    g[rng.random(m) < 0.2] = sb.one
    return g


# --------------------------------------------------------------------------------------------
# cocotb tests
# --------------------------------------------------------------------------------------------
@cocotb.test()
async def scatter_bit_exact(dut):
    """Two layers of experts (every queue of :func:`queues`, gates with 0 and 1.0, outputs in
    the operand range and in the wide range), each followed by a read-out of every token."""
    sb = ScatterBench(dut)
    rng = np.random.default_rng(61)
    await sb.tb.reset()
    for layer in range(2):
        for q in queues(sb, rng):
            sb.accumulate(q, gates_for(sb, rng, len(q)), sb.random_y(rng, len(q), wide=layer == 1))
        await sb.finish(sb.readout())
    dut._log.info("scatter: %d rows accumulated, %d outputs compared; %s", sb.rows_accumulated,
                  sb.outputs_compared, sb.sb.summary())


@cocotb.test()
async def accumulator_saturates(dut):
    """Gate 1.0 times the largest wide outputs, same token back to back: the accumulator
    saturates (both signs) and later contributions start from the saturated value, which a
    wrapping or unbounded accumulator would not give; also a gate-0 row of extremes."""
    sb = ScatterBench(dut)
    rng = np.random.default_rng(62)
    hi, lo = smax(out_bits(sb.cfg)), smin(out_bits(sb.cfg))
    up, down = rng.choice(sb.tokens, 2, replace=False)
    ids = np.array([up] * 5 + [down] * 5 + [up, down])
    y = np.zeros((len(ids), sb.n), dtype=np.int64)
    y[0:3], y[3:5] = hi, lo            # up: saturates high, then comes back down by 2 * 2**30
    y[5:8], y[8:10] = lo, hi           # down: the mirror image
    y[10], y[11] = lo, hi              # gate 0 below: no effect
    gates = np.array([sb.one] * 10 + [0, 0])
    await sb.tb.reset()
    sb.accumulate(ids, gates, y)
    acc_hi = smax(sb.cu.accumulator_bits)
    unbounded = (gates[:, None] * y)[:5].sum(axis=0)
    assert (sb.acc[up] == acc_hi + 2 * sb.one * lo).all() and (unbounded != sb.acc[up]).all()
    assert (golden.scatter_finalise(sb.acc[[up, down]], sb.cfg)
            != golden.scatter_finalise(np.array([unbounded, -unbounded]), sb.cfg)).all()
    await sb.finish(sb.readout())
    dut._log.info("saturation: %s", sb.sb.summary())


@cocotb.test()
async def scatter_backpressure(dut):
    """Random valid gaps on ``cmd``, ``route`` and ``y`` and bursty ready on ``result``."""
    sb = ScatterBench(dut, idle=lambda s: random_pattern(0.5, seed=s),
                      backpressure=bursty(seed=72, max_stall=50, max_burst=15), seed=70)
    rng = np.random.default_rng(63)
    await sb.tb.reset()
    for _ in range(2):
        for q in queues(sb, rng):
            sb.accumulate(q, gates_for(sb, rng, len(q)), sb.random_y(rng, len(q)))
        await sb.finish(sb.readout())
    dut._log.info("scatter back-pressure: %d outputs compared; %s", sb.outputs_compared,
                  sb.sb.summary())


@cocotb.test()
async def scatter_cycles_equal_timing_model(dut):
    """The first row is taken ``FIRST_ROW_CYCLE`` cycles after its command (rows and route
    entries offered from the start); rows every cycle, repeated tokens back to back included,
    never stall; the next command follows ``next_command_after_rows`` cycles after the last
    row; a read-out takes
    ``readout_cycles``; and the command after a read-out is taken the cycle after its end."""
    sb = ScatterBench(dut, backpressure=always())
    rng = np.random.default_rng(64)
    rows = sb.cu.rows
    await sb.tb.reset()
    t = int(rng.integers(sb.tokens))
    for index, ids in enumerate((np.full(3 * rows + 1, t), np.arange(sb.tokens))):
        y0, cmd0 = sb.y.count, sb.cmd.count
        beats = sb.accumulate(ids, gates_for(sb, rng, len(ids)), sb.random_y(rng, len(ids)))
        words = sb.readout()
        if index == 1:          # a command queued behind the read-out
            sb.accumulate([t], [sb.one], sb.random_y(rng, 1))
        await sb.finish(words)
        ys = sb.y.beats[y0:y0 + beats]
        first = ys[0].cycle - sb.cmd.beats[cmd0].cycle
        assert first == timing.FIRST_ROW_CYCLE, f"first row {first} cycles after its command"
        assert ys[-1].cycle - ys[0].cycle + 1 == beats, "rows stalled"
        gap = sb.cmd.beats[cmd0 + 1].cycle - ys[-1].cycle
        assert gap == timing.next_command_after_rows(sb.cfg), gap
        measured = sb.result.beats[-1].cycle - sb.cmd.beats[cmd0 + 1].cycle + 1
        expected = timing.readout_cycles(sb.cfg, sb.tokens, sb.n)
        assert measured == expected, f"read-out: measured {measured}, model {expected}"
        dut._log.info("scatter cycles: %d rows in %d cycles; read-out of %d words %d cycles "
                      "(model %d)", beats, ys[-1].cycle - ys[0].cycle + 1, words, measured,
                      expected)
    after = sb.cmd.beats[-1].cycle - sb.result.beats[-1].cycle
    assert after == 1, f"command after a read-out taken {after} cycles after its last beat"
    await sb.finish(sb.readout(1))


@cocotb.test()
async def scatter_reset_mid_stream(dut):
    """Reset while rows accumulate and a read-out is stalled; clearing the memory with a
    read-out then gives bit-exact results again."""
    sb = ScatterBench(dut, idle=lambda s: random_pattern(0.8, seed=s),
                      backpressure=bursty(seed=82, max_stall=30, max_burst=5), seed=80)
    rng = np.random.default_rng(65)
    await sb.tb.reset()
    for q in queues(sb, rng)[:3]:
        sb.accumulate(q, gates_for(sb, rng, len(q)), sb.random_y(rng, len(q)))
    sb.readout()
    sb.accumulate(*((q := queues(sb, rng)[0]), gates_for(sb, rng, len(q)),
                    sb.random_y(rng, len(q))))
    await sb.result.wait_for(3)
    await sb.tb.reset(cycles=3)
    assert sb.sb.flushed > 0 and (sb.y.dropped > 0 or sb.route.dropped > 0), "reset too late"
    await sb.tb.cycles(10)
    assert int(dut.result__valid.value) == 0
    await sb.finish(sb.clear_all())
    for q in queues(sb, rng):
        sb.accumulate(q, gates_for(sb, rng, len(q)), sb.random_y(rng, len(q)))
    await sb.finish(sb.readout())
    dut._log.info("scatter reset: %s", sb.sb.summary())


# --------------------------------------------------------------------------------------------
# pytest entry point
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg_name", ["tiny", "m3vit-tiny", "ulx3s"])
def test_scatter(cfg_name):
    runner.run("scatter", cfg_name, __name__)
