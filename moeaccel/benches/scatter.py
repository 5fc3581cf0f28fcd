"""Measurement bench: the scatter-accumulate back end (``hw/scatter.py``) alone.

Each case ``{"name", "tokens", "n", "queue"}``: an accumulate command over the queue's entries
(``queue`` = token ids, gates 1.0), its ``len(queue) * ceil(n/cols)`` output rows offered every
cycle on ``y``, then a read-out of ``tokens`` tokens with ``result`` always ready. Measured: the
cycles from the accumulate command's handshake through the last result handshake inclusive
(``accumulate``), and of the read-out alone (``readout``).
"""

from __future__ import annotations

import math

import cocotb

from hw.compute_unit_layouts import Layouts
from hw.scatter import ScatterLayouts

from . import cases, write_results
from .streams import Bench


@cocotb.test()
async def measure(dut):
    tb = Bench(dut)
    cfg = tb.config()
    cu = cfg.hardware.compute_unit
    lay = ScatterLayouts(cfg)
    cmd, route = tb.source("cmd", lay.command), tb.source("route", lay.route)
    y = tb.source("y", Layouts(cfg).out)
    result = tb.sink("result", lay.result)
    one = 1 << cfg.hardware.softmax.prob_frac_bits
    await tb.reset()
    results = {}
    for case in cases():
        queue, n, tokens = case["queue"], case["n"], case["tokens"]
        c0, r0, y0 = cmd.count, result.count, y.count
        cmd.extend([{"readout": 0, "m": len(queue), "n": n},
                    {"readout": 1, "m": tokens, "n": n}])
        route.extend({"token": t, "gate": one} for t in queue)
        tiles = math.ceil(n / cu.cols)
        for i in range(0, len(queue), cu.rows):          # the compute unit's row order
            for j in range(tiles):
                for r in range(i, min(i + cu.rows, len(queue))):
                    y.append({"row": r, "data": [1] * cu.cols,
                              "last": int(r == len(queue) - 1 and j == tiles - 1)})
        await result.wait_for(r0 + tokens * tiles)
        end = result.beats[-1].cycle + 1
        start = cmd.beats[c0].cycle
        results[case["name"]] = {"cycles": end - start, "readout": end - cmd.beats[c0 + 1].cycle,
                                 "first_row": y.beats[y0].cycle - start,
                                 "last_row": y.beats[-1].cycle - start}
        await tb.cycles(4)
    write_results(results)
