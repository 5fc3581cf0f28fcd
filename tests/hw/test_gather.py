"""hw/gather.py feeding hw/compute_unit.py, on Verilator: ``expert_linear`` bit-exact against
golden/linear.py, cycles against sim/timing/gather.py.

The DUT is a test-only top (:class:`GatheredComputeUnit`): the gather front end's ``act`` wired
to the compute unit's, every other stream of both blocks a port. The bench reuses
:class:`tests.hw.test_compute_unit.ComputeUnitBench` in its gathered mode: each job is a GEMM
over ``memory[tokens]``, its token ids go on ``token`` and its command on both ``cmd`` and
``gather_cmd``; the scoreboard compares every output row with :func:`golden.linear.expert_linear`.

Run: ``python -m pytest tests/hw/test_gather.py -q``.
"""

from __future__ import annotations

import math

import cocotb
import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring

from golden import linear as golden
from golden.fixed import smax, smin
from hw.compute_unit_layouts import Layouts
from hw.compute_unit import ComputeUnit
from hw.gather import Gather, GatherLayouts, memory_elements, write_lanes
from moeaccel import config
from sim.timing import gather as timing
from tests.hw import runner
from tests.hw.streams import Bench, always, bursty, random_pattern
from tests.hw.test_compute_unit import ComputeUnitBench, Gemm, random_gemm


class GatheredComputeUnit(wiring.Component):
    """Test top: :class:`Gather` -> :class:`ComputeUnit` (``act``); other streams are ports."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._gather, self._unit = Gather(cfg), ComputeUnit(cfg)
        g, u = self._gather.signature.members, self._unit.signature.members
        super().__init__({
            "write": g["write"], "gather_cmd": g["cmd"], "token": g["token"],
            "cmd": u["cmd"], "bias": u["bias"], "weight": u["weight"], "out": u["out"],
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.gather, m.submodules.unit = g, u = self._gather, self._unit
        wiring.connect(m, g.act, u.act)
        for ours, theirs in (("write", g.write), ("gather_cmd", g.cmd), ("token", g.token),
                             ("cmd", u.cmd), ("bias", u.bias), ("weight", u.weight),
                             ("out", u.out)):
            wiring.connect(m, wiring.flipped(getattr(self, ours)), theirs)
        return m


class GatherBench(ComputeUnitBench):
    """:class:`ComputeUnitBench` with the gather front end and its activation memory."""

    def __init__(self, dut, idle=None, backpressure=None, seed: int = 0,
                 observe_out: bool = True):
        super().__init__(dut, idle, backpressure, seed, gathered=True, observe_out=observe_out)
        self.lanes = write_lanes(self.cfg)
        self.write = self.tb.source("write", GatherLayouts(self.cfg).write,
                                    idle=None if idle is None else idle(seed + 6))
        self.memory: np.ndarray | None = None

    def matrix(self, rng, k: int) -> np.ndarray:
        """A random full-range ``[tokens, k]`` activation matrix that fits the memory."""
        cu = self.cu
        tokens = min(self.cfg.model.tokens, memory_elements(self.cfg) // k)
        return rng.integers(smin(cu.operand_bits), smax(cu.operand_bits) + 1, (tokens, k))

    async def load(self, x: np.ndarray) -> None:
        """Write ``x`` row-major from element 0 (a whole number of words; the tail is padded)."""
        flat = x.ravel().tolist()
        flat += [0] * (-len(flat) % self.lanes)
        for a in range(len(flat) // self.lanes):
            self.write.append({"addr": a, "data": flat[a * self.lanes:(a + 1) * self.lanes]})
        await self.write.wait_idle()
        self.memory = x

    def job(self, rng, tokens, n: int, wide: bool = False) -> Gemm:
        """A random GEMM over the rows ``memory[tokens]`` of the loaded matrix."""
        ids = np.asarray(tokens, dtype=np.int64)
        base = random_gemm(self.cfg, rng, len(ids), self.memory.shape[1], n, wide)
        x = golden.gather(self.memory, ids)
        return Gemm(x, base.w, base.bias, base.multiplier, base.shift, wide, ids)


def queues(cfg, rng, tokens: int) -> list[list[int]]:
    """Expert queues: every token in order, one token, one token repeated, random with repeats
    (short, one tile, several tiles), every token reversed."""
    rows = cfg.hardware.compute_unit.rows
    t = int(rng.integers(tokens))
    return [list(range(tokens)), [t], [t] * (2 * rows + 1),
            rng.integers(tokens, size=3).tolist(), rng.integers(tokens, size=rows).tolist(),
            rng.integers(tokens, size=3 * rows + 2).tolist(), list(range(tokens))[::-1]]


def reductions(cfg) -> list[int]:
    """Reduction lengths: shorter than, equal to and longer than the drain time."""
    rows = cfg.hardware.compute_unit.rows
    return [rows, rows + 3, 2 * rows + 5]


# --------------------------------------------------------------------------------------------
# cocotb tests
# --------------------------------------------------------------------------------------------
@cocotb.test()
async def gathered_gemms_bit_exact(dut):
    """Every queue of :func:`queues` for each reduction length (memory reloaded per length),
    random output widths, a wide-format job and fused-GELU jobs (the expert FFN's first layer:
    ``requantise(gelu(expert_linear(...)))``): bit-exact, nothing lost."""
    gb = GatherBench(dut)
    rng = np.random.default_rng(31)
    cols = gb.cu.cols
    await gb.tb.reset()
    for k in reductions(gb.cfg):
        await gb.load(gb.matrix(rng, k))
        jobs = [gb.job(rng, q, int(rng.integers(1, 3 * cols + 2)))
                for q in queues(gb.cfg, rng, gb.memory.shape[0])]
        jobs.append(gb.job(rng, queues(gb.cfg, rng, gb.memory.shape[0])[5], cols + 1, wide=True))
        jobs += [gb.job(rng, q, 2 * cols, wide=True).with_gelu(gb.cfg, rng)
                 for q in queues(gb.cfg, rng, gb.memory.shape[0])[::2]]
        await gb.run(jobs)
    assert gb.sb.matched == gb.sb.expected == gb.sb.received
    dut._log.info("gathered GEMMs: %d outputs compared; %s", gb.outputs_compared, gb.sb.summary())


@cocotb.test()
async def gathered_cycles_equal_timing_model(dut):
    """One gathered GEMM at a time at full rate: command to last output equals
    ``sim.timing.gather.gathered_gemm_cycles``."""
    gb = GatherBench(dut, backpressure=always())
    rng = np.random.default_rng(32)
    rows, cols = gb.cu.rows, gb.cu.cols
    await gb.tb.reset()
    for k in (rows, 2 * rows + 5):
        await gb.load(gb.matrix(rng, k))
        tokens = gb.memory.shape[0]
        for m, n in ((1, 1), (rows, cols), (3 * rows + 1, 2 * cols + 1), (tokens, cols)):
            job = gb.job(rng, rng.integers(tokens, size=m), n)
            cmd0 = gb.cmd.count
            await gb.run([job])
            measured = gb.out.beats[-1].cycle - gb.cmd.beats[cmd0].cycle + 1
            assert gb.gather_cmd.beats[cmd0].cycle == gb.cmd.beats[cmd0].cycle
            expected = timing.gathered_gemm_cycles(gb.cfg, m, k, n)
            assert measured == expected, f"{(m, k, n)}: measured {measured}, model {expected}"
            dut._log.info("gathered cycles (m=%d, k=%d, n=%d): %d (model %d)", m, k, n,
                          measured, expected)


@cocotb.test()
async def gathered_backpressure(dut):
    """Random valid gaps on every input (memory writes, token ids, both commands, weights,
    biases) and bursty output ready: bit-exact and complete."""
    gb = GatherBench(dut, idle=lambda s: random_pattern(0.6, seed=s),
                     backpressure=bursty(seed=42, max_stall=60, max_burst=20), seed=40)
    rng = np.random.default_rng(33)
    await gb.tb.reset()
    k = gb.cu.rows + 3
    await gb.load(gb.matrix(rng, k))
    jobs = [gb.job(rng, q, int(rng.integers(1, 2 * gb.cu.cols + 2)))
            for q in queues(gb.cfg, rng, gb.memory.shape[0])]
    await gb.run(jobs)
    dut._log.info("gathered back-pressure: %d outputs compared; %s", gb.outputs_compared,
                  gb.sb.summary())


@cocotb.test()
async def gathered_reset_mid_stream(dut):
    """Reset while token ids and outputs are in flight; a clean gathered GEMM afterwards is
    bit-exact with the modelled cycle count (the memory keeps its contents)."""
    gb = GatherBench(dut, idle=lambda s: random_pattern(0.8, seed=s),
                     backpressure=bursty(seed=52, max_stall=20, max_burst=10), seed=50)
    rng = np.random.default_rng(34)
    rows, cols = gb.cu.rows, gb.cu.cols
    await gb.tb.reset()
    await gb.load(gb.matrix(rng, 2 * rows))
    tokens = gb.memory.shape[0]
    gb.queue(gb.job(rng, rng.integers(tokens, size=4 * rows + 1), 3 * cols))
    await gb.out.wait_for(rows + 1)
    await gb.tb.reset(cycles=3)
    assert gb.sb.flushed > 0 and gb.token.dropped > 0, "reset did not land mid-GEMM"
    await gb.tb.cycles(20)
    assert gb.out.count == gb.sb.received and int(dut.out__valid.value) == 0
    for src in (gb.cmd, gb.gather_cmd, gb.token, gb.bias, gb.weight):
        src.idle = always()
    gb.out.backpressure = always()
    m, n = 2 * rows + 1, 2 * cols - 1
    cmd0 = gb.cmd.count
    await gb.run([gb.job(rng, rng.integers(tokens, size=m), n)])
    measured = gb.out.beats[-1].cycle - gb.cmd.beats[cmd0].cycle + 1
    assert measured == timing.gathered_gemm_cycles(gb.cfg, m, 2 * rows, n), measured
    dut._log.info("gathered reset: %s", gb.sb.summary())


@cocotb.test()
async def gather_block_cycles(dut):
    """The gather block alone (``act`` a port): every act beat equal to the gathered rows in the
    unit's tile order (lanes past ``m`` don't-care), and cycles equal to
    ``sim.timing.gather.cycles`` also for tiles too short to hide the next tile's ids
    (``k * ceil(n/cols) < rows``), then under random valid gaps and act back-pressure."""
    tb = Bench(dut)
    cfg = tb.config()
    cu = cfg.hardware.compute_unit
    rows, cols = cu.rows, cu.cols
    lay = GatherLayouts(cfg)
    cmd, token, write = (tb.source(p, lay.command if p == "cmd" else
                                   lay.token if p == "token" else lay.write)
                         for p in ("cmd", "token", "write"))
    act = tb.sink("act", Layouts(cfg).act)
    sb = tb.scoreboard("act", act, compare=lambda e, g: all(a is None or a == b
                                                            for a, b in zip(e, g)))
    rng = np.random.default_rng(35)
    lanes = write_lanes(cfg)
    await tb.reset()
    for k in (1, 3, rows + 1):
        tokens = min(cfg.model.tokens, memory_elements(cfg) // k)
        x = rng.integers(smin(cu.operand_bits), smax(cu.operand_bits) + 1, (tokens, k))
        flat = x.ravel().tolist() + [0] * (-x.size % lanes)
        write.extend({"addr": a, "data": flat[a * lanes:(a + 1) * lanes]}
                     for a in range(len(flat) // lanes))
        await write.wait_idle()
        for m, n in ((1, 1), (rows, 1), (3 * rows + 1, 1), (2 * rows, 2 * cols + 1)):
            ids = rng.integers(tokens, size=m)
            cmd.append({"m": m, "k": k, "n": n})
            token.extend(int(t) for t in ids)
            for i in range(0, m, rows):
                tile = ids[i:i + rows]
                for _ in range(math.ceil(n / cols)):
                    for kk in range(k):
                        sb.expect([int(x[t, kk]) for t in tile] + [None] * (rows - len(tile)))
            c0, a0 = cmd.count, act.count
            beats = math.ceil(m / rows) * math.ceil(n / cols) * k
            await act.wait_for(a0 + beats)
            measured = act.beats[-1].cycle - cmd.beats[c0].cycle + 1
            assert measured == timing.cycles(cfg, m, k, n), \
                f"{(m, k, n)}: measured {measured}, model {timing.cycles(cfg, m, k, n)}"
            dut._log.info("gather alone (m=%d, k=%d, n=%d): %d beats in %d cycles (model %d)",
                          m, k, n, beats, measured, timing.cycles(cfg, m, k, n))
    for src, seed in ((cmd, 1), (token, 2)):
        src.idle = random_pattern(0.5, seed=seed)
    act.backpressure = bursty(seed=3, max_stall=30, max_burst=8)
    for m, n in ((2 * rows + 3, cols + 1), (1, 1), (rows, 3 * cols)):
        ids = rng.integers(tokens, size=m)
        cmd.append({"m": m, "k": k, "n": n})
        token.extend(int(t) for t in ids)
        for i in range(0, m, rows):
            for _ in range(math.ceil(n / cols)):
                for kk in range(k):
                    sb.expect([int(x[t, kk]) for t in ids[i:i + rows]]
                              + [None] * (rows - len(ids[i:i + rows])))
    await act.wait_for(sb.expected)
    await tb.cycles(10)
    sb.check()
    dut._log.info("gather alone: %s", sb.summary())


# --------------------------------------------------------------------------------------------
# pytest entry point
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg_name", ["tiny", "m3vit-tiny"])
def test_gather(cfg_name):
    cfg = config.load(cfg_name)
    tests = (["gathered_gemms_bit_exact", "gathered_cycles_equal_timing_model",
              "gathered_backpressure", "gathered_reset_mid_stream"] if cfg_name == "tiny"
             else ["gathered_gemms_bit_exact", "gathered_cycles_equal_timing_model"])
    runner.run_component(f"gathered_compute_unit_{cfg.name.replace('-', '_')}",
                         lambda: GatheredComputeUnit(cfg), __name__, key=cfg_name,
                         cfg_name=cfg_name, testcase=tests)


def test_gather_block():
    """The gather block on its own (tiny): act beats and ``sim.timing.gather.cycles``."""
    runner.run("gather", "tiny", __name__, testcase="gather_block_cycles")
