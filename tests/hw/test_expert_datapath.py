"""The MoE options end to end on Verilator: gather -> compute unit (optionally with the fused
GELU) -> scatter-accumulate, then the finalised read-out, bit-exact against
``scatter_finalise(scatter_accumulate(..., expert_linear(...)))`` from golden/linear.py, with
the cycle count composed from sim/timing (gather, compute unit, scatter).

The DUT is a test-only top (:class:`ExpertDatapath`): the gather front end's ``act`` wired to
the compute unit's, the unit's ``out`` to the scatter block's ``y``, every other stream a port.
The MoE engine that will drive these blocks chooses where an expert's hidden rows go between
its two GEMMs, so this top runs one GEMM per expert (the second FFN layer's shape, scattered).

Run: ``python -m pytest tests/hw/test_expert_datapath.py -q`` (tiny: one small Verilator build).
"""

from __future__ import annotations

import cocotb
import numpy as np
from amaranth import Module
from amaranth.lib import wiring

from hw.compute_unit import ComputeUnit
from hw.gather import Gather
from hw.scatter import ScatterAccumulate
from moeaccel import config
from sim.timing import gather, scatter
from tests.hw import runner
from tests.hw.streams import bursty, random_pattern
from tests.hw.test_gather import GatherBench, queues
from tests.hw.test_scatter import ScatterBench, gates_for


class ExpertDatapath(wiring.Component):
    """Test top: :class:`Gather` -> :class:`ComputeUnit` -> :class:`ScatterAccumulate`."""

    #: port name -> (block, member) for every stream that stays outside
    PORTS = {"write": ("gather", "write"), "gather_cmd": ("gather", "cmd"),
             "token": ("gather", "token"), "cmd": ("unit", "cmd"), "bias": ("unit", "bias"),
             "weight": ("unit", "weight"), "scatter_cmd": ("scatter", "cmd"),
             "route": ("scatter", "route"), "result": ("scatter", "result")}

    def __init__(self, cfg):
        self.blocks = {"gather": Gather(cfg), "unit": ComputeUnit(cfg),
                       "scatter": ScatterAccumulate(cfg)}
        super().__init__({port: self.blocks[block].signature.members[member]
                          for port, (block, member) in self.PORTS.items()})

    def elaborate(self, platform) -> Module:
        m = Module()
        for name, block in self.blocks.items():
            m.submodules[name] = block
        b = self.blocks
        wiring.connect(m, b["gather"].act, b["unit"].act)
        wiring.connect(m, b["unit"].out, b["scatter"].y)
        for port, (block, member) in self.PORTS.items():
            wiring.connect(m, wiring.flipped(getattr(self, port)),
                           getattr(self.blocks[block], member))
        return m


class DatapathBench:
    """The gathered compute unit's bench and the scatter bench on one clock."""

    def __init__(self, dut, idle=None, backpressure=None, seed: int = 0):
        self.unit = GatherBench(dut, idle, None, seed, observe_out=False)
        self.tb, self.cfg = self.unit.tb, self.unit.cfg
        self.scatter = ScatterBench(dut, None, idle, backpressure, seed + 50, tb=self.tb,
                                    cmd_port="scatter_cmd", feed_y=False)

    def expert(self, rng, ids, fused: bool) -> None:
        """Queue one expert: a gathered GEMM of ``n`` = the layer's output width (with the fused
        GELU or plain), its rows scatter-accumulated with random gates."""
        job = self.unit.job(rng, ids, self.scatter.n, wide=fused)
        if fused:
            job = job.with_gelu(self.cfg, rng)
        self.unit.queue(job)
        self.scatter.accumulate(job.tokens, gates_for(self.scatter, rng, len(ids)),
                                job.golden(self.cfg))


async def experts_scattered(dut, idle, backpressure, seed: int) -> None:
    """Every queue of :func:`tests.hw.test_gather.queues` as an expert (plain and fused GELU
    alternating), all scattered into one output, then read out: bit-exact."""
    db = DatapathBench(dut, idle, backpressure, seed)
    rng = np.random.default_rng(seed)
    await db.tb.reset()
    await db.scatter.finish(db.scatter.clear_all())       # the memory survives resets
    await db.unit.load(db.unit.matrix(rng, db.cfg.hardware.compute_unit.rows + 3))
    for e, ids in enumerate(queues(db.cfg, rng, db.unit.memory.shape[0])):
        db.expert(rng, ids, fused=e % 2 == 1)
    await db.scatter.finish(db.scatter.readout())
    dut._log.info("datapath: %d outputs compared; %s", db.scatter.outputs_compared,
                  db.scatter.sb.summary())


@cocotb.test()
async def experts_scattered_bit_exact(dut):
    """:func:`experts_scattered` at full rate."""
    await experts_scattered(dut, None, None, seed=90)


@cocotb.test()
async def experts_scattered_backpressure(dut):
    """:func:`experts_scattered` with random valid gaps on every input and bursty ready on the
    read-out (the compute unit's output waits for the scatter block's commands and route)."""
    await experts_scattered(dut, lambda s: random_pattern(0.6, seed=s),
                            bursty(seed=92, max_stall=40, max_burst=10), seed=100)


@cocotb.test()
async def expert_cycles_equal_timing_model(dut):
    """One expert at full rate: from the commands (all in one cycle) to the read-out command
    is ``gathered_gemm_cycles - 1 + next_command_after_rows``; the read-out then takes
    ``readout_cycles``."""
    db = DatapathBench(dut)
    rng = np.random.default_rng(93)
    cu = db.cfg.hardware.compute_unit
    await db.tb.reset()
    await db.scatter.finish(db.scatter.clear_all())
    k = cu.rows + 3
    await db.unit.load(db.unit.matrix(rng, k))
    for fused, ids in ((False, np.arange(db.unit.memory.shape[0])), (True, [3, 3, 1])):
        c0, s0 = db.unit.cmd.count, db.scatter.cmd.count
        db.expert(rng, ids, fused)
        await db.scatter.finish(db.scatter.readout())
        start = db.unit.cmd.beats[c0].cycle
        assert start == db.unit.gather_cmd.beats[c0].cycle == db.scatter.cmd.beats[s0].cycle
        to_readout = db.scatter.cmd.beats[s0 + 1].cycle - start
        model = (gather.gathered_gemm_cycles(db.cfg, len(ids), k, db.scatter.n) - 1
                 + scatter.next_command_after_rows(db.cfg))
        assert to_readout == model, f"measured {to_readout}, model {model}"
        total = db.scatter.result.beats[-1].cycle - start + 1
        model_total = model + scatter.readout_cycles(db.cfg, db.scatter.tokens, db.scatter.n)
        assert total == model_total, f"measured {total}, model {model_total}"
        dut._log.info("expert of %d tokens%s: %d cycles to the read-out (model %d), %d in all "
                      "(model %d)", len(ids), " +GELU" if fused else "", to_readout, model,
                      total, model_total)


def test_expert_datapath():
    cfg = config.load("tiny")
    runner.run_component("expert_datapath_tiny", lambda: ExpertDatapath(cfg), __name__,
                         key="tiny", cfg_name="tiny")
