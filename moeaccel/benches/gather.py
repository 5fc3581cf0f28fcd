"""Measurement bench: the gather front end (``hw/gather.py``) alone, ``act`` always ready.

Each case ``{"name", "m", "k", "n", "tokens"}`` is one command streaming the rows of the queue
``tokens`` (``m`` token ids, offered every cycle) in the compute unit's tile order. Measured:
the cycles from the command handshake through the last ``act`` handshake inclusive. The memory
contents do not matter for timing and are left as they are.
"""

from __future__ import annotations

import math

import cocotb

from hw.compute_unit_layouts import Layouts
from hw.gather import GatherLayouts

from . import cases, write_results
from .streams import Bench


@cocotb.test()
async def measure(dut):
    tb = Bench(dut)
    cfg = tb.config()
    cu = cfg.hardware.compute_unit
    lay = GatherLayouts(cfg)
    cmd, token = tb.source("cmd", lay.command), tb.source("token", lay.token)
    act = tb.sink("act", Layouts(cfg).act)
    await tb.reset()
    results = {}
    for case in cases():
        m, k, n = case["m"], case["k"], case["n"]
        c0, a0 = cmd.count, act.count
        cmd.append({"m": m, "k": k, "n": n})
        token.extend(case["tokens"])
        await act.wait_for(a0 + math.ceil(m / cu.rows) * math.ceil(n / cu.cols) * k)
        results[case["name"]] = {"cycles": act.beats[-1].cycle - cmd.beats[c0].cycle + 1}
        await tb.cycles(4)
    write_results(results)
