"""Measurement bench: GEMMs on the compute unit (``hw/compute_unit.py``), one at a time.

Each case ``{"name", "m", "k", "n", "gelu"}`` is one command with random operands fed in the
unit's tile order (token tiles outer, output-feature tiles inner; per tile the biases, then ``k``
act and weight beats), every input always valid and ``out`` always ready. Measured: the cycles
from the command handshake through the last output handshake inclusive, and the array steps.
"""

from __future__ import annotations

import math

import cocotb
import numpy as np

from golden.fixed import smax, smin
from hw.compute_unit_layouts import Layouts

from . import cases, write_results
from .streams import Bench


@cocotb.test()
async def measure(dut):
    tb = Bench(dut)
    cfg = tb.config()
    cu = cfg.hardware.compute_unit
    lay = Layouts(cfg)
    cmd, bias = tb.source("cmd", lay.command), tb.source("bias", lay.bias)
    act, weight = tb.source("act", lay.act), tb.source("weight", lay.weight)
    out = tb.sink("out", lay.out)
    rng = np.random.default_rng(0)
    lo, hi = smin(cu.operand_bits), smax(cu.operand_bits)
    await tb.reset()
    results = {}
    for case in cases():
        m, k, n, gelu = case["m"], case["k"], case["n"], int(case.get("gelu", False))
        c0, a0, o0 = cmd.count, act.count, out.count
        cmd.append({"m": m, "k": k, "n": n, "multiplier": 1, "shift": 8, "wide": gelu,
                    "gelu": gelu, "act_multiplier": 1, "act_shift": 0})
        rows = 0
        for i in range(math.ceil(m / cu.rows)):
            for _ in range(math.ceil(n / cu.cols)):
                bias.append([0] * cu.cols)
                act.extend(rng.integers(lo, hi + 1, (k, cu.rows)).tolist())
                weight.extend(rng.integers(lo, hi + 1, (k, cu.cols)).tolist())
                rows += min(cu.rows, m - i * cu.rows)
        await out.wait_for(o0 + rows, timeout_cycles=100_000)
        steps = act.beats[a0:]
        results[case["name"]] = {
            "cycles": out.beats[-1].cycle - cmd.beats[c0].cycle + 1,
            "array_steps": len(steps),
            "step_span": steps[-1].cycle - steps[0].cycle + 1}
        await tb.cycles(4)
    write_results(results)
