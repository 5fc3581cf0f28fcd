"""Measurement bench: rows through the softmax block (``hw/softmax.py``).

Each case ``{"name", "rows", "length"}`` streams ``rows`` random rows of ``length`` logits back
to back, input always valid, output always ready. Measured: the cycles from the first logit's
handshake through the last probability's handshake inclusive.
"""

from __future__ import annotations

import cocotb
import numpy as np

from golden.fixed import smax, smin
from hw.softmax import input_layout, output_layout

from . import cases, write_results
from .streams import Bench


@cocotb.test()
async def measure(dut):
    tb = Bench(dut)
    sm = tb.config().hardware.softmax
    src, snk = tb.source("i", input_layout(sm)), tb.sink("o", output_layout(sm))
    rng = np.random.default_rng(0)
    await tb.reset()
    results = {}
    for case in cases():
        rows, length = case["rows"], case["length"]
        i0, o0 = src.count, snk.count
        logits = rng.integers(smin(sm.input_bits), smax(sm.input_bits) + 1, (rows, length))
        src.extend({"logit": int(x), "last": int(j == length - 1)}
                   for row in logits for j, x in enumerate(row))
        await snk.wait_for(o0 + rows * length)
        results[case["name"]] = {"cycles": snk.beats[-1].cycle - src.beats[i0].cycle + 1}
        await tb.cycles(40)     # the block is idle again
    write_results(results)
