"""hw/softmax.py on Verilator against golden/softmax.py (bit-exact) and sim/timing/softmax.py
(cycle-exact).

Every test drives ``i`` with :class:`tests.hw.streams.StreamSource` and receives ``o`` with a
:class:`~tests.hw.streams.StreamSink`. The reference model collects accepted logits into rows
(ended by ``last`` or by ``max_row_length`` elements, as the hardware does), runs
:func:`golden.softmax.softmax` on each finished row and feeds a
:class:`~tests.hw.streams.Scoreboard` that checks every output beat (probability, row max,
reciprocal, last) came out once, in order, equal.

Run: ``python -m pytest tests/hw/test_softmax.py -q`` (one Verilator build per config).
"""

from __future__ import annotations

import cocotb
import numpy as np
import pytest

from golden import softmax as golden
from golden.fixed import smax, smin
from hw.softmax import input_layout, output_layout
from sim.timing import softmax as timing
from tests.hw import runner
from tests.hw.streams import Bench, always, bursty, random_pattern

CONFIGS = ["tiny", "m3vit-tiny", "ulx3s"]   # ulx3s: one element every other cycle


# --------------------------------------------------------------------------------------------
# Bench helpers
# --------------------------------------------------------------------------------------------
class SoftmaxBench:
    """A :class:`Bench` with the softmax's source, sink and row-level golden model wired up."""

    def __init__(self, dut, idle=None, backpressure=None):
        self.tb = Bench(dut)
        self.cfg = self.tb.config()
        self.sm = self.cfg.hardware.softmax
        self.src = self.tb.source("i", input_layout(self.sm), idle=idle)
        self.snk = self.tb.sink("o", output_layout(self.sm), backpressure=backpressure)
        self.sb = self.tb.scoreboard("softmax", self.snk)
        self.rows_checked = 0
        self._row: list[int] = []
        self.src.on_accept(self._model)
        self.tb.on_reset(self._row.clear)

    def _model(self, item: dict) -> None:
        self._row.append(item["logit"])
        if item["last"] or len(self._row) == self.sm.max_row_length:
            self.sb.expect_all(expected_beats(np.array(self._row), self.sm))
            self.rows_checked += 1
            self._row.clear()

    @property
    def inside_row(self) -> bool:
        """True while part of a row has been accepted and its end has not."""
        return bool(self._row)

    def beats(self, rows: list[np.ndarray]) -> list[dict]:
        return [{"logit": int(x), "last": int(j == len(r) - 1)}
                for r in rows for j, x in enumerate(r)]

    async def run(self, rows: list[np.ndarray]) -> int:
        """Send ``rows``, wait for every probability, check the scoreboard; return the count."""
        beats = self.beats(rows)
        start = self.snk.count
        await self.src.send(beats)
        await self.snk.wait_for(start + len(beats))
        await self.tb.cycles(timing.latency(self.cfg) + 8)   # anything extra would show now
        self.sb.check()
        return len(beats)


def expected_beats(row: np.ndarray, sm) -> list[dict]:
    """The output beats of one row according to the golden model."""
    r = golden.softmax(row, sm)
    return [{"prob": int(p), "max": int(r.max_q), "recip": int(r.recip_q),
             "last": int(j == len(row) - 1)} for j, p in enumerate(r.probs_q)]


def random_rows(sm, count: int, seed: int, lengths: list[int] | None = None) -> list[np.ndarray]:
    """Seeded rows: lengths 1..max_row_length (biased to the ends), logits of mixed spread,
    some over the whole input range (saturating extremes included)."""
    rng = np.random.default_rng(seed)
    lo, hi = smin(sm.input_bits), smax(sm.input_bits)
    rows = []
    for k in range(count):
        if lengths is not None:
            n = lengths[k % len(lengths)]
        else:
            n = int(rng.choice([1, 2, sm.max_row_length, int(rng.integers(1, sm.max_row_length + 1))]))
        kind = rng.integers(4)
        if kind == 3:
            row = rng.integers(lo, hi + 1, n)
        else:
            std = [0.5, 1.0, 3.0][kind] * float(rng.choice([1, 4]))
            row = golden.quantise_logits(rng.normal(rng.normal(0, 4), std, n), sm)
        rows.append(np.asarray(row, dtype=np.int64))
    return rows


def special_rows(sm) -> list[np.ndarray]:
    """All-equal rows, rows of length 1 and max_row_length, format extremes."""
    lo, hi, n = smin(sm.input_bits), smax(sm.input_bits), sm.max_row_length
    rows = [np.full(k, v) for v in (lo, -1, 0, 1, hi) for k in (1, 2, 3, n)]
    rows += [np.array([v]) for v in (lo, lo + 1, hi - 1, hi)]
    rows += [np.resize([lo, hi], n), np.resize([hi, lo, lo], n), np.resize([lo, lo + 1], 7)]
    rows += [np.arange(n) * ((hi - lo) // max(n - 1, 1)) + lo, np.arange(n, 0, -1) - n // 2]
    return [np.asarray(r, dtype=np.int64) for r in rows]


# --------------------------------------------------------------------------------------------
# cocotb tests
# --------------------------------------------------------------------------------------------
async def _run_on_schedule(sb: SoftmaxBench, rows: list[np.ndarray]) -> tuple[list, list]:
    """Send ``rows`` at full rate into an always-ready sink and assert every input and output
    handshake happens in exactly the cycle sim/timing/softmax.schedule_lengths predicts.
    Returns the input and output beats of the run."""
    n_in, n_out = sb.src.count, sb.snk.count
    await sb.run(rows)
    ins, outs = sb.src.beats[n_in:], sb.snk.beats[n_out:]
    t0 = ins[0].cycle
    plan = timing.schedule_lengths(sb.cfg, [len(r) for r in rows])
    gap = timing.input_interval(sb.cfg)
    want_in = [c for t in plan for c in range(t.first_in, t.last_in + 1, gap)]
    want_out = [c for t in plan for c in range(t.first_out, t.last_out + 1)]
    assert [b.cycle - t0 for b in ins] == want_in, "input handshake cycles"
    assert [b.cycle - t0 for b in outs] == want_out, "output handshake cycles"
    return ins, outs


@cocotb.test()
async def timing_equals_sim(dut):
    """Back-to-back rows of lengths 1, 3, 16, max_row_length, then mixed lengths, at full rate:
    every handshake in the cycle sim/timing/softmax predicts; latency, row interval and total
    cycles equal its functions; bit-exact."""
    sb = SoftmaxBench(dut, idle=always(), backpressure=always())
    await sb.tb.reset()
    for length in sorted({1, 3, 16, sb.sm.max_row_length}):
        rows = random_rows(sb.sm, 6, seed=length, lengths=[length])
        ins, outs = await _run_on_schedule(sb, rows)
        lat = outs[0].cycle - ins[0].cycle
        span = outs[-1].cycle - ins[0].cycle + 1
        period = (outs[-1].cycle - outs[length - 1].cycle) / (len(rows) - 1)
        assert lat == timing.row_latency(sb.cfg, length)
        assert span == timing.cycles(sb.cfg, len(rows), length)
        assert period == timing.row_interval(sb.cfg, length)
        dut._log.info("length %d: latency %d (last in -> first out %d), %.2f cycles/row, "
                      "throughput %.3f elements/cycle, %d rows in %d cycles", length, lat,
                      timing.latency(sb.cfg), period, length / period, len(rows), span)
    mixed = random_rows(sb.sm, 24, seed=5)
    ins, outs = await _run_on_schedule(sb, mixed)
    dut._log.info("mixed lengths: %d rows, %d elements in %d cycles", len(mixed), len(outs),
                  outs[-1].cycle - ins[0].cycle + 1)
    assert sb.sb.matched == sb.sb.expected == sb.sb.received


@cocotb.test()
async def random_rows_backpressure(dut):
    """Thousands of seeded random elements through random valid gaps and bursty ready with
    stalls up to 200 cycles: nothing lost, duplicated or wrong."""
    sb = SoftmaxBench(dut, idle=random_pattern(0.7, seed=11),
                      backpressure=bursty(seed=12, max_stall=200, max_burst=60))
    await sb.tb.reset()
    rows = random_rows(sb.sm, 60 if sb.sm.max_row_length <= 64 else 30, seed=13)
    sent = await sb.run(rows)
    assert sb.sb.matched == sb.sb.received == sent
    dut._log.info("back-pressure: %d rows, %d vectors; %s", len(rows), sent, sb.sb.summary())


@cocotb.test()
async def full_rate_in_slow_sink(dut):
    """Source always valid, sink ready 1 cycle in 3: the row queue and buffer fill, in order."""
    sb = SoftmaxBench(dut, idle=always(), backpressure=random_pattern(0.33, seed=21))
    await sb.tb.reset()
    sent = await sb.run(random_rows(sb.sm, 40, seed=22))
    assert sb.sb.matched == sent
    dut._log.info("slow sink: %d vectors; %s", sent, sb.sb.summary())


@cocotb.test()
async def special_rows_and_overlong(dut):
    """All-equal logits, lengths 1 and max_row_length, min/max values; a row longer than
    max_row_length is cut into rows of max_row_length (as the model does)."""
    sb = SoftmaxBench(dut, idle=random_pattern(0.9, seed=31),
                      backpressure=bursty(seed=32, max_stall=30, max_burst=20))
    await sb.tb.reset()
    rows = special_rows(sb.sm)
    rows.append(random_rows(sb.sm, 1, seed=33, lengths=[2 * sb.sm.max_row_length + 3])[0])
    sent = await sb.run(rows)
    assert sb.sb.matched == sent
    one = 1 << sb.sm.prob_frac_bits
    probs = [b.item["prob"] for b in sb.snk.beats]
    assert probs[:1] == [one] and max(probs) == one
    dut._log.info("special: %d rows, %d vectors; %s", sb.rows_checked, sent, sb.sb.summary())


@cocotb.test()
async def reset_mid_row(dut):
    """Reset while a row is half accepted and others wait in the buffer and divider; nothing
    from before comes out afterwards, and a clean run after it is bit-exact."""
    sb = SoftmaxBench(dut, idle=random_pattern(0.8, seed=41),
                      backpressure=bursty(seed=42, max_stall=20, max_burst=10))
    await sb.tb.reset()
    sb.src.extend(sb.beats(random_rows(sb.sm, 20, seed=43)))
    await sb.snk.wait_for(sb.sm.max_row_length // 2 + 3)
    while not sb.inside_row:
        await sb.tb.cycles(1)
    await sb.tb.reset(cycles=3)
    assert sb.src.dropped > 0 and sb.sb.flushed > 0, "reset did not land mid-stream"
    await sb.tb.cycles(1)
    assert int(dut.o__valid.value) == 0
    before = sb.snk.count
    sent = await sb.run(random_rows(sb.sm, 12, seed=44))
    assert sb.snk.count - before == sent
    dut._log.info("reset: %s", sb.sb.summary())


# --------------------------------------------------------------------------------------------
# pytest entry points
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_softmax(cfg_name):
    runner.run("softmax", cfg_name, __name__)
