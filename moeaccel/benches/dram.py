"""A cocotb DRAM model for the MoE engine's read port (``hw/weight_fetch.py``'s
``dram_req``/``dram_data``): latency, limited bandwidth, random stalls."""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ClockCycles

from sim.timing.weight_fetch import port_bytes

from .streams import Bench


class DramModel:
    """Serves the engine's DRAM read port from ``image``: each request's beats become available
    ``latency`` cycles after the request is taken, then flow at ``bytes_per_cycle`` on average
    (a token bucket over the port width) with random stalls (probability ``stall_p`` per beat of
    a stall of 1..``max_stall`` cycles; 0: none, as the simulator's DRAM). Requests are served
    in order. A reset drops everything in flight. At ``bytes_per_cycle >= port width`` and no
    stalls a request of ``b`` beats keeps the fetcher busy ``latency + b`` cycles
    (:func:`sim.timing.weight_fetch.busy_cycles`)."""

    def __init__(self, tb: Bench, cfg, image: bytes, latency: int, bytes_per_cycle: float,
                 stall_p: float = 0.0, max_stall: int = 12, seed: int = 0):
        from hw.weight_fetch import DramLayouts

        self.tb, self.image = tb, image
        self.width = port_bytes(cfg)
        self.latency, self.rate = latency, min(1.0, bytes_per_cycle / self.width)
        self.stall_p, self.max_stall = stall_p, max_stall
        self.rng = random.Random(seed)
        lay = DramLayouts(cfg)
        self.req = tb.sink("dram_req", lay.request)
        self.data = tb.source("dram_data", lay.response, idle=self._pattern())
        self.requests = 0
        self.epoch = 0
        self.req.on_beat(lambda beat: cocotb.start_soon(self._serve(beat.item, self.epoch)))
        tb.on_reset(self._on_reset)

    def configure(self, image: bytes | None = None, **kwargs) -> None:
        """Change the image and/or ``latency``, ``bytes_per_cycle``, ``stall_p``, ``max_stall``
        for the following requests."""
        if image is not None:
            self.image = image
        for key, value in kwargs.items():
            if key == "bytes_per_cycle":
                self.rate = min(1.0, value / self.width)
            else:
                setattr(self, key, value)

    def _on_reset(self) -> None:
        self.epoch += 1

    def _pattern(self):
        credit = 0.0
        while True:
            credit = min(credit + self.rate, 1.0)
            if self.stall_p and self.rng.random() < self.stall_p:
                for _ in range(self.rng.randint(1, self.max_stall)):
                    yield False
            if credit >= 1.0 - 1e-9:
                credit -= 1.0
                yield True
            else:
                yield False

    async def _serve(self, request: dict, epoch: int) -> None:
        self.requests += 1
        await ClockCycles(self.tb.clk, self.latency)
        if epoch != self.epoch:
            return
        w, addr = self.width, request["addr"]
        assert addr % w == 0 and addr + request["beats"] * w <= len(self.image), request
        self.data.extend({"data": int.from_bytes(self.image[a:a + w], "little")}
                         for a in range(addr, addr + request["beats"] * w, w))
