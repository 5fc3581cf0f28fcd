"""Measurement bench: whole router layers (``hw/router.py``): logits in, flush, queue read-out.

Each case ``{"name", "logits"}`` (a ``tokens x router_outputs`` list) streams the layer's logits
always valid, offers the flush once the last one is accepted and takes the read-out always ready. Measured:
the cycles from the first logit's handshake to the first cycle ``busy`` is low after the
read-out, the
entries read out (queued after capacity) and the router's dropped count.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import FallingEdge

from hw.expert_queues import entry_layout, flush_layout, status_layout
from hw.router import logit_layout

from . import cases, write_results
from .streams import Bench, unpack


@cocotb.test()
async def measure(dut):
    tb = Bench(dut)
    cfg = tb.config()
    r = cfg.model.router_outputs
    src, flush = tb.source("i", logit_layout(cfg)), tb.source("flush", flush_layout())
    snk = tb.sink("o", entry_layout(cfg))
    await tb.reset()
    results = {}
    for case in cases():
        i0, o0 = src.count, snk.count
        src.extend({"logit": int(v), "last": int(j == r - 1)}
                   for row in case["logits"] for j, v in enumerate(row))
        await src.wait_idle()            # the flush must follow the layer's last logit
        await flush.send([{"discard": 0}])
        while True:          # sampled like the stream layer: at the falling edge of a cycle
            await FallingEdge(tb.clk)
            if tb.cycle > flush.beats[-1].cycle and not int(dut.busy.value):
                break
        status = unpack(status_layout(cfg), dut.status.value.to_unsigned())
        results[case["name"]] = {"cycles": tb.cycle - src.beats[i0].cycle,
                                 "entries": snk.count - o0, "dropped": status["dropped"]}
        await tb.cycles(4)
    write_results(results)
