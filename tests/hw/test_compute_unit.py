"""hw/compute_unit.py on Verilator against golden/linear.py (bit-exact) and
sim/timing/compute_unit.py (cycles).

The bench drives the four input streams (``cmd``, ``bias``, ``act``, ``weight``) with
:class:`tests.hw.streams.StreamSource` in the tile order the unit documents, receives ``out`` with
a :class:`~tests.hw.streams.StreamSink`, and a :class:`~tests.hw.streams.Scoreboard` checks every
output row (token index, the lanes inside ``n``, ``last``) against :func:`golden.linear.linear`.
Lanes the unit documents as don't-care (tokens past ``m``, outputs past ``n`` in a partial tile)
are fed random garbage, so a leak would show.

Run: ``python -m pytest tests/hw/test_compute_unit.py -q`` (one Verilator build per config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cocotb
import numpy as np
import pytest

from golden import linear as golden
from golden.fixed import choose_requant, requantise, smax, smin
from golden.gelu import gelu
from hw.compute_unit_layouts import Layouts, out_bits
from sim.timing import compute_unit as timing
from tests.hw import runner
from tests.hw.streams import Bench, always, bursty, random_pattern

CONFIGS = ["tiny", "m3vit-tiny"]


# --------------------------------------------------------------------------------------------
# GEMM jobs and the streams that carry them
# --------------------------------------------------------------------------------------------
@dataclass
class Gemm:
    """One command's operands, requant settings and golden output."""

    x: np.ndarray            # [m, k]
    w: np.ndarray            # [k, n]
    bias: np.ndarray         # [n]
    multiplier: int
    shift: int
    wide: bool = False
    tokens: np.ndarray | None = None     # gathered GEMM: x = memory[tokens] (the expert queue)
    gelu: bool = False                   # fused GELU, then requantise with act_multiplier/shift
    act_multiplier: int = 0
    act_shift: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.x.shape[0], self.x.shape[1], self.w.shape[1]

    def golden(self, cfg) -> np.ndarray:
        cu = cfg.hardware.compute_unit
        if self.gelu:       # golden.moe.expert_ffn's linear -> GELU -> activation requantiser
            h = golden.linear(self.x, self.w, self.bias, self.multiplier, self.shift, cu,
                              cfg.hardware.gelu.input_bits)
            return requantise(gelu(h, cfg), self.act_multiplier, self.act_shift,
                              cu.operand_bits, cu.rounding)
        bits = out_bits(cfg) if self.wide else None
        return golden.linear(self.x, self.w, self.bias, self.multiplier, self.shift, cu, bits)

    def with_gelu(self, cfg, rng) -> "Gemm":
        """This GEMM with the fused GELU and a random activation requantiser: full-scale GELU
        outputs over a 1/4 .. 16 times the int range (fine steps to heavy saturation)."""
        cu, ge = cfg.hardware.compute_unit, cfg.hardware.gelu
        full = float(1 << (ge.output_bits - 1))
        scale = float(rng.choice([0.25, 1.0, 4.0, 16.0])) * smax(cu.operand_bits) / full
        act_multiplier, act_shift = choose_requant(scale, cu.requant_multiplier_bits,
                                                   cu.requant_max_shift)
        return Gemm(self.x, self.w, self.bias, self.multiplier, self.shift, True, self.tokens,
                    True, act_multiplier, act_shift)


def random_gemm(cfg, rng, m: int, k: int, n: int, wide: bool = False) -> Gemm:
    """Random operands over the whole int range; a requant scale that spreads the outputs over
    the output range (with some saturation)."""
    cu = cfg.hardware.compute_unit
    lo, hi = smin(cu.operand_bits), smax(cu.operand_bits)
    x = rng.integers(lo, hi + 1, (m, k))
    w = rng.integers(lo, hi + 1, (k, n))
    spread = 1 << (2 * cu.operand_bits - 2)
    bias = rng.integers(-spread * 8, spread * 8, n)
    bits = out_bits(cfg) if wide else cu.operand_bits
    target = max(1.0, 3.0 * spread * math.sqrt(k) / (1 << (bits - 1)))   # ~3 sigma at full scale
    multiplier, shift = choose_requant(1.0 / target, cu.requant_multiplier_bits,
                                              cu.requant_max_shift)
    return Gemm(x, w, bias, multiplier, shift, wide)


class ComputeUnitBench:
    """A :class:`Bench` with the unit's sources, sink and scoreboard."""

    def __init__(self, dut, idle=None, backpressure=None, seed: int = 0, gathered: bool = False,
                 observe_out: bool = True):
        self.tb = Bench(dut)
        self.cfg = self.tb.config()
        self.cu = self.cfg.hardware.compute_unit
        lay = Layouts(self.cfg)
        pattern = (lambda s: None) if idle is None else idle
        self.cmd = self.tb.source("cmd", lay.command, idle=pattern(seed + 1))
        self.bias = self.tb.source("bias", lay.bias, idle=pattern(seed + 2))
        self.gathered = gathered
        if gathered:        # a test-only top with the gather front end (tests/hw/test_gather.py)
            from hw.gather import GatherLayouts
            glay = GatherLayouts(self.cfg)
            self.gather_cmd = self.tb.source("gather_cmd", glay.command, idle=pattern(seed + 5))
            self.token = self.tb.source("token", glay.token, idle=pattern(seed + 3))
        else:
            self.act = self.tb.source("act", lay.act, idle=pattern(seed + 3))
        self.weight = self.tb.source("weight", lay.weight, idle=pattern(seed + 4))
        # observe_out=False: ``out`` is wired inside the DUT (tests/hw/test_expert_datapath.py)
        self.out = self.tb.sink("out", lay.out, backpressure=backpressure) if observe_out else None
        self.sb = self.tb.scoreboard("compute_unit", self.out, compare=_same_row)
        self.garbage = np.random.default_rng(seed + 99)
        self.outputs_compared = 0

    def queue(self, job: Gemm) -> int:
        """Queue ``job`` on every input stream and its expected rows on the scoreboard; return the
        number of output beats it produces."""
        cu = self.cu
        rows, cols = cu.rows, cu.cols
        m, k, n = job.shape
        lo, hi = smin(cu.operand_bits), smax(cu.operand_bits)
        y = job.golden(self.cfg)
        self.cmd.append({"m": m, "k": k, "n": n, "multiplier": job.multiplier,
                         "shift": job.shift, "wide": int(job.wide), "gelu": int(job.gelu),
                         "act_multiplier": job.act_multiplier, "act_shift": job.act_shift})
        if self.gathered:
            self.gather_cmd.append({"m": m, "k": k, "n": n})
            self.token.extend(int(t) for t in job.tokens)
        beats = 0       # output rows expected on ``out`` (none if it is not observed)
        m_tiles, n_tiles = math.ceil(m / rows), math.ceil(n / cols)
        for i in range(m_tiles):
            x_tile = self.garbage.integers(lo, hi + 1, (rows, k))
            valid_rows = min(rows, m - i * rows)
            x_tile[:valid_rows] = job.x[i * rows:i * rows + valid_rows]
            for j in range(n_tiles):
                valid_cols = min(cols, n - j * cols)
                outs = slice(j * cols, j * cols + valid_cols)
                w_tile = self.garbage.integers(lo, hi + 1, (k, cols))
                w_tile[:, :valid_cols] = job.w[:, outs]
                b_tile = self.garbage.integers(-1000, 1000, cols)
                b_tile[:valid_cols] = job.bias[outs]
                self.bias.append(b_tile.tolist())
                if not self.gathered:
                    self.act.extend(x_tile.T.tolist())
                self.weight.extend(w_tile.tolist())
                for r in range(valid_rows if self.out is not None else 0):
                    row = i * rows + r
                    data = y[row, outs].tolist() + [None] * (cols - valid_cols)
                    last = i == m_tiles - 1 and j == n_tiles - 1 and r == valid_rows - 1
                    self.sb.expect({"row": row, "data": data, "last": int(last)})
                    beats += 1
                    self.outputs_compared += valid_cols
        return beats

    async def run(self, jobs: list[Gemm], check: bool = True) -> None:
        """Queue ``jobs`` back to back and wait until every output row arrived."""
        target = self.out.count + sum(self.queue(job) for job in jobs)
        await self.out.wait_for(target, timeout_cycles=400_000)
        await self.tb.cycles(timing.latency(self.cfg) + 8)      # anything extra would show now
        if check:
            self.sb.check()


def _same_row(expected, got) -> bool:
    """Equal token index, ``last`` and every lane that is not don't-care (``None``)."""
    return (expected["row"] == got["row"] and expected["last"] == got["last"]
            and all(e is None or e == g for e, g in zip(expected["data"], got["data"])))


def hiding_k(cfg) -> int:
    """The shortest reduction that hides a full tile's drain (one array step every cycle)."""
    cu = cfg.hardware.compute_unit
    return cu.rows * cu.row_cycles + timing.ARRAY_STAGES


def shapes(cfg) -> list[tuple[int, int, int]]:
    """Run-time shapes around the array size: k = 1, m and n not multiples of rows/cols, single
    tiles, many tiles, and a k long enough to hide the drain."""
    r, c = cfg.hardware.compute_unit.rows, cfg.hardware.compute_unit.cols
    return [(1, 1, 1), (r, 1, c), (r + 1, 1, 2 * c + 1), (r, r, c), (2 * r + 3, 7, c + 5),
            (3 * r, hiding_k(cfg), 2 * c), (5, 40, 3 * c - 1), (2 * r - 1, 2, 1),
            (1, 2 * r + 5, 4 * c + 3), (3 * r + 2, 3 * r, 3 * c + 2)]


# --------------------------------------------------------------------------------------------
# cocotb tests
# --------------------------------------------------------------------------------------------
@cocotb.test()
async def random_gemms_bit_exact(dut):
    """Seeded random GEMMs of every shape in :func:`shapes` (three draws each), back to back at
    full rate, plus each shape in the wide (GELU-input) output format and with the fused GELU,
    all shuffled: bit-exact, nothing lost or duplicated."""
    cb = ComputeUnitBench(dut)
    rng = np.random.default_rng(1)
    jobs = [random_gemm(cb.cfg, rng, *s) for _ in range(3) for s in shapes(cb.cfg)]
    jobs += [random_gemm(cb.cfg, rng, *s, wide=True) for s in shapes(cb.cfg)]
    jobs += [random_gemm(cb.cfg, rng, *s, wide=True).with_gelu(cb.cfg, rng)
             for s in shapes(cb.cfg)]
    rng.shuffle(jobs)           # GELU and plain GEMMs back to back in both orders
    fused = np.concatenate([job.golden(cb.cfg).ravel() for job in jobs if job.gelu])
    hi = smax(cb.cu.operand_bits)
    assert (fused == hi).any() and (fused < 0).any() and ((fused > 0) & (fused < hi)).any(), \
        "fused GELU jobs miss saturated, negative or in-range outputs"
    await cb.tb.reset()
    await cb.run(jobs)
    assert cb.sb.matched == cb.sb.expected == cb.sb.received
    dut._log.info("random GEMMs: %d GEMMs, %d outputs compared; %s", len(jobs),
                  cb.outputs_compared, cb.sb.summary())


@cocotb.test()
async def cycles_equal_timing_model(dut):
    """Each GEMM alone at full rate (the model's expert layer also with the fused GELU): command
    handshake to last output equals ``gemm_cycles``; and for ``k >= hiding_k`` one array step
    every cycle."""
    cb = ComputeUnitBench(dut, idle=None, backpressure=always())
    rng = np.random.default_rng(2)
    m = cb.cfg.model
    layer = (m.tokens, m.embed_dim, m.expert_hidden)          # a real expert layer of the model
    await cb.tb.reset()
    for shape, fused in [(s, False) for s in shapes(cb.cfg)] + [(layer, False), (layer, True)]:
        job = random_gemm(cb.cfg, rng, *shape, wide=fused)
        if fused:
            job = job.with_gelu(cb.cfg, rng)
        cmd0, act0, out0 = cb.cmd.count, cb.act.count, cb.out.count
        await cb.run([job])
        measured = cb.out.beats[-1].cycle - cb.cmd.beats[cmd0].cycle + 1
        expected = timing.gemm_cycles(cb.cfg, *shape)
        assert measured == expected, f"{shape}: measured {measured} cycles, model {expected}"
        steps = cb.act.beats[act0:]
        span = steps[-1].cycle - steps[0].cycle + 1
        if shape[1] >= hiding_k(cb.cfg):
            assert span == len(steps), f"{shape}: {len(steps)} array steps took {span} cycles"
        assert len(steps) == timing.tiles(cb.cfg, shape[0], shape[2]) * shape[1]
        assert cb.out.count - out0 == sum(min(cb.cu.rows, shape[0] - i * cb.cu.rows)
                                          for i in range(math.ceil(shape[0] / cb.cu.rows))) \
            * math.ceil(shape[2] / cb.cu.cols)
        dut._log.info("cycles %s%s: %d (model %d), %d steps in %d cycles, utilisation %.3f",
                      shape, " +GELU" if fused else "", measured, expected, len(steps), span,
                      timing.utilisation(cb.cfg, *shape))
    dut._log.info("timing: %d outputs compared; %s", cb.outputs_compared, cb.sb.summary())


@cocotb.test()
async def extremes_and_saturation(dut):
    """-128/127 operands everywhere (largest products, both signs), extreme biases, requant
    settings that saturate both ways in both output formats, all-equal inputs, shift 0."""
    cb = ComputeUnitBench(dut)
    cu = cb.cu
    lo, hi = smin(cu.operand_bits), smax(cu.operand_bits)
    rng = np.random.default_rng(3)
    r, c, k = cu.rows, cu.cols, 2 * cu.rows + 3
    limit = golden.bias_limit(cu) - 1
    jobs = []
    for mult_bits, shift in ((1, 0), (cu.requant_multiplier_bits, cu.requant_max_shift),
                             (cu.requant_multiplier_bits, 14), (3, 5)):
        x = rng.choice([lo, hi], (r + 2, k))
        w = rng.choice([lo, hi], (k, c + 3))
        bias = rng.choice([limit, -limit, 0, lo * hi], c + 3)
        multiplier = (1 << mult_bits) - 1
        jobs += [Gemm(x, w, bias, multiplier, shift, wide) for wide in (False, True)]
        jobs.append(jobs[-1].with_gelu(cb.cfg, rng))
    jobs.append(Gemm(np.full((r, k), lo), np.full((k, c), lo), np.full(c, -limit), 1, 0))
    outs = np.concatenate([job.golden(cb.cfg).ravel() for job in jobs])
    assert (outs == hi).any() and (outs == lo).any() and (outs == smax(out_bits(cb.cfg))).any() \
        and (outs == smin(out_bits(cb.cfg))).any(), "extremes did not saturate both formats"
    await cb.tb.reset()
    await cb.run(jobs)
    dut._log.info("extremes: %d outputs compared; %s", cb.outputs_compared, cb.sb.summary())


@cocotb.test()
async def random_backpressure_long_stalls(dut):
    """Random valid gaps on all four inputs and bursty ready with stalls up to 200 cycles on the
    output, over back-to-back GEMMs: bit-exact, in order, nothing lost or duplicated."""
    cb = ComputeUnitBench(dut, idle=lambda s: random_pattern(0.6, seed=s),
                          backpressure=bursty(seed=12, max_stall=200, max_burst=30), seed=10)
    rng = np.random.default_rng(4)
    jobs = [random_gemm(cb.cfg, rng, *s) for s in shapes(cb.cfg)]
    jobs += [random_gemm(cb.cfg, rng, *s, wide=True).with_gelu(cb.cfg, rng)
             for s in shapes(cb.cfg)[::2]]
    await cb.tb.reset()
    await cb.run(jobs)
    assert cb.sb.matched == cb.sb.expected
    dut._log.info("back-pressure: %d outputs compared; %s", cb.outputs_compared, cb.sb.summary())


@cocotb.test()
async def reset_mid_gemm(dut):
    """Reset while a GEMM is accumulating and draining under back-pressure; nothing comes out
    afterwards, and a clean GEMM after it is bit-exact with the modelled cycle count."""
    cb = ComputeUnitBench(dut, idle=lambda s: random_pattern(0.8, seed=s),
                          backpressure=bursty(seed=22, max_stall=20, max_burst=10), seed=20)
    rng = np.random.default_rng(5)
    r, c = cb.cu.rows, cb.cu.cols
    await cb.tb.reset()
    cb.queue(random_gemm(cb.cfg, rng, 4 * r + 1, 2 * r + 5, 3 * c + 1))
    await cb.out.wait_for(r + 1)
    await cb.tb.reset(cycles=3)
    assert cb.sb.flushed > 0 and cb.act.dropped > 0, "reset did not land mid-GEMM"
    await cb.tb.cycles(timing.latency(cb.cfg) + 3 * r)
    assert cb.out.count == cb.sb.received and int(dut.out__valid.value) == 0
    cb.act.idle = cb.weight.idle = cb.bias.idle = cb.cmd.idle = always()
    cb.out.backpressure = always()
    shape = (2 * r + 1, hiding_k(cb.cfg) + 1, 2 * c - 1)
    cmd0 = cb.cmd.count
    await cb.run([random_gemm(cb.cfg, rng, *shape)])
    measured = cb.out.beats[-1].cycle - cb.cmd.beats[cmd0].cycle + 1
    assert measured == timing.gemm_cycles(cb.cfg, *shape), measured
    dut._log.info("reset: %s", cb.sb.summary())


# --------------------------------------------------------------------------------------------
# pytest entry point
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_compute_unit(cfg_name):
    runner.run("compute_unit", cfg_name, __name__)
