"""hw/router.py on Verilator against golden/router.py (bit-exact) and sim/timing/router.py (cycles).

The logits go in through :class:`tests.hw.streams.StreamSource`; the reference model collects the
accepted logits of a layer and, when the flush is accepted, expects
:func:`golden.router.route`'s queues (expert by expert, token order) on ``o`` and its counters on
``status``. A :class:`~tests.hw.streams.Scoreboard` checks every entry came out once, in order,
equal.

Variants (one Verilator build each): the presets ``tiny`` and ``m3vit-tiny``, and two ``tiny``
variants covering the other gating style, null experts and a capacity limit.

Run: ``python -m pytest tests/hw/test_router.py -q``.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge

from golden import router as golden
from golden.fixed import smax, smin
from hw.expert_queues import entry_layout, flush_layout, status_layout
from hw.router import Router, logit_layout
from moeaccel import config
from moeaccel.validate import ROUTER_VARIANTS
from sim.timing import router as timing
from tests.hw import runner
from tests.hw.streams import Bench, always, bursty, random_pattern, unpack

#: name -> (preset, model overrides): moeaccel validate's router variants (so both share one
#: Verilator build each) plus the m3vit-tiny router
VARIANTS: dict[str, tuple[str, dict]] = {**ROUTER_VARIANTS, "m3vit-tiny": ("m3vit-tiny", {})}


def variant_config(name: str) -> config.DesignConfig:
    preset, overrides = VARIANTS[name]
    return config.load(preset).replace(overrides)


def expected_entries(routing: golden.Routing) -> list[dict]:
    """The read-out beats for a golden routing."""
    items = []
    active = routing.active
    for e in active:
        q = routing.queues[e]
        for i, (token, gate) in enumerate(zip(q.tokens.tolist(), q.gates.tolist())):
            last = i == len(q) - 1
            items.append({"expert": e, "count": len(q), "token": token, "gate": gate,
                          "last": int(last), "end": int(last and e == active[-1])})
    return items


# --------------------------------------------------------------------------------------------
# Bench
# --------------------------------------------------------------------------------------------
class RouterBench:
    """Sources for the logits and the flush, a sink for the queue read-out, and the golden
    model: per layer, the logits of accepted tokens; on the flush, the expected entries and
    counters."""

    def __init__(self, dut, idle=None, backpressure=None):
        self.dut = dut
        self.tb = Bench(dut)
        self.cfg = variant_config(os.environ["ROUTER_VARIANT"])
        self.r = self.cfg.model.router_outputs
        self.src = self.tb.source("i", logit_layout(self.cfg), idle=idle)
        self.flush = self.tb.source("flush", flush_layout())
        self.snk = self.tb.sink("o", entry_layout(self.cfg), backpressure=backpressure)
        self.sb = self.tb.scoreboard("router", self.snk)
        self.status_expected: list[dict] = []
        self.layer: list[list[int]] = []
        self.row: list[int] = []
        self.entries = 0
        self.src.on_accept(self._logit)
        self.flush.on_accept(self._flush)
        self.tb.on_reset(self._forget)

    def _logit(self, item: dict) -> None:
        self.row.append(item["logit"])
        if item["last"]:
            assert len(self.row) == self.r, "testbench sent a malformed token"
            self.layer.append(self.row)
            self.row = []

    def _flush(self, item: dict) -> None:
        assert not self.row, "flush accepted in the middle of a token"
        if self.layer:
            routing = golden.route(np.array(self.layer, dtype=np.int64), self.cfg)
            items = expected_entries(routing)
            status = {"tokens": len(self.layer), "dropped": routing.dropped_total,
                      "null_slots": routing.null_slots}
        else:
            items, status = [], {"tokens": 0, "dropped": 0, "null_slots": 0}
        if item["discard"]:
            items = []
        self.sb.expect_all(items)
        self.entries += len(items)
        self.status_expected.append(status)
        self.layer = []

    def _forget(self) -> None:
        self.layer, self.row = [], []

    def beats(self, logits: np.ndarray) -> list[dict]:
        return [{"logit": int(v), "last": int(j == self.r - 1)}
                for row in logits for j, v in enumerate(row)]

    async def wait_idle(self, timeout: int = 100_000) -> None:
        """Until the read-out is over (``busy`` low after the flush)."""
        for _ in range(timeout):
            await RisingEdge(self.tb.clk)
            if not int(self.dut.busy.value):
                return
        raise AssertionError("router stayed busy")

    def status(self) -> dict:
        return unpack(status_layout(self.cfg), self.dut.status.value.to_unsigned())

    async def layer_run(self, logits: np.ndarray, discard: bool = False) -> None:
        """One layer: its logits, the flush, the read-out; check entries and counters."""
        await self.src.send(self.beats(logits))
        await self.flush.send([{"discard": int(discard)}])
        await self.tb.cycles(1)
        await self.wait_idle()
        await self.snk.wait_for(self.entries)
        self.sb.check()
        assert self.status() == self.status_expected[-1], (self.status(), self.status_expected[-1])


def random_logits(cfg, tokens: int, rng: np.random.Generator, spread: float) -> np.ndarray:
    """Seeded logits: normal with ``spread`` LSBs of deviation, clipped to the format."""
    sm = cfg.hardware.softmax
    x = np.rint(rng.normal(0.0, spread, size=(tokens, cfg.model.router_outputs)))
    return np.clip(x, smin(sm.input_bits), smax(sm.input_bits)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# cocotb tests
# --------------------------------------------------------------------------------------------
@cocotb.test()
async def random_layers_backpressure(dut):
    """Layers of random logits (wide spread, and narrow so probabilities and logits tie), random
    valid gaps and bursty ready: every queue entry and counter bit-exact with golden."""
    rb = RouterBench(dut, idle=random_pattern(0.8, seed=1),
                     backpressure=bursty(seed=2, max_stall=30, max_burst=20))
    cfg = rb.cfg
    rng = np.random.default_rng(3)
    await rb.tb.reset()
    total = 0
    layers = max(4, 2400 // cfg.model.tokens)
    for n in range(layers):
        tokens = cfg.model.tokens if n % 3 else int(rng.integers(1, cfg.model.tokens + 1))
        spread = (600.0, 4.0, 60.0)[n % 3]
        await rb.layer_run(random_logits(cfg, tokens, rng, spread))
        total += tokens
    assert rb.sb.matched == rb.sb.expected > 0
    dut._log.info("random layers: %d layers, %d tokens; %s", layers, total, rb.sb.summary())


@cocotb.test()
async def ties_and_extremes(dut):
    """All-equal logits (ties to the lowest ids), format extremes, and one max with the rest at
    the minimum."""
    rb = RouterBench(dut, idle=random_pattern(0.9, seed=5), backpressure=random_pattern(0.7, 6))
    cfg = rb.cfg
    sm = cfg.hardware.softmax
    lo, hi = smin(sm.input_bits), smax(sm.input_bits)
    tokens = cfg.model.tokens
    await rb.tb.reset()
    for value in (0, lo, hi, 7):
        await rb.layer_run(np.full((tokens, rb.r), value))
    extreme = np.full((tokens, rb.r), lo)
    extreme[np.arange(tokens), np.arange(tokens) % rb.r] = hi
    await rb.layer_run(extreme)
    mixed = np.random.default_rng(7).choice([lo, 0, hi], size=(tokens, rb.r))
    await rb.layer_run(mixed)
    assert rb.sb.matched == rb.sb.expected > 0


@cocotb.test()
async def one_expert_takes_every_token(dut):
    """Every token's best expert is the same one (the others get none or only the ties): the
    capacity limit, if any, drops the overflow and counts it."""
    rb = RouterBench(dut, backpressure=random_pattern(0.5, seed=8))
    cfg = rb.cfg
    tokens = cfg.model.tokens
    await rb.tb.reset()
    for e in (0, cfg.model.experts - 1):
        logits = np.zeros((tokens, rb.r), dtype=np.int64)
        logits[:, e] = 1000
        await rb.layer_run(logits)
        if cfg.model.capacity_factor is not None:
            assert rb.status_expected[-1]["dropped"] > 0
    assert rb.sb.matched == rb.sb.expected > 0


async def idle_cycle(rb: RouterBench, dut, limit: int) -> int:
    """The first cycle (within ``limit``) after now in which the router is not ``busy``."""
    for _ in range(limit):
        await RisingEdge(rb.tb.clk)
        if not int(dut.busy.value):
            return rb.tb.cycle
    raise AssertionError(f"router still busy after {limit} cycles")


@cocotb.test()
async def null_experts_and_empty_layers(dut):
    """A layer whose tokens all pick null experts when the config has them (no entries, all
    counted), and a flush with no tokens at all: nothing comes out, counters are zero, and the
    router is idle ``timing.readout_cycles(cfg, 0)`` (``READOUT_EMPTY``) cycles after the flush."""
    rb = RouterBench(dut)
    cfg = rb.cfg
    tokens = cfg.model.tokens
    await rb.tb.reset()
    await rb.flush.send([{"discard": 0}])
    flush_cycle = rb.flush.beats[-1].cycle
    assert await idle_cycle(rb, dut, 20) - flush_cycle == timing.readout_cycles(cfg, 0)
    await rb.layer_run(np.zeros((0, rb.r), dtype=np.int64))
    assert rb.status() == {"tokens": 0, "dropped": 0, "null_slots": 0}
    if cfg.model.null_experts:
        logits = np.full((tokens, rb.r), -2000)
        logits[:, cfg.model.experts:] = 2000
        before = rb.snk.count
        await rb.layer_run(logits)
        if cfg.model.top_k <= cfg.model.null_experts:
            assert rb.snk.count == before
        assert rb.status()["null_slots"] == tokens * min(cfg.model.top_k, cfg.model.null_experts)
    assert rb.sb.ok


@cocotb.test()
async def discarded_layer(dut):
    """A flush with ``discard``: nothing is read out, the counters are latched, and the next
    layer starts from empty queues."""
    rb = RouterBench(dut, backpressure=random_pattern(0.6, seed=15))
    cfg = rb.cfg
    rng = np.random.default_rng(16)
    await rb.tb.reset()
    before = rb.snk.count
    await rb.layer_run(random_logits(cfg, cfg.model.tokens, rng, 300.0), discard=True)
    assert rb.snk.count == before and rb.status()["tokens"] == cfg.model.tokens
    await rb.layer_run(random_logits(cfg, cfg.model.tokens, rng, 300.0))
    assert rb.sb.matched == rb.sb.expected > 0


@cocotb.test()
async def next_layer_during_readout(dut):
    """The next layer's logits are offered while the read-out runs under back-pressure: they
    wait in the pipeline and are routed into the next layer."""
    rb = RouterBench(dut, backpressure=random_pattern(0.3, seed=9))
    cfg = rb.cfg
    rng = np.random.default_rng(10)
    await rb.tb.reset()
    for _ in range(3):
        await rb.src.send(rb.beats(random_logits(cfg, cfg.model.tokens, rng, 300.0)))
        await rb.flush.send([{"discard": 0}])
    await rb.tb.cycles(1)
    await rb.wait_idle()
    await rb.snk.wait_for(rb.entries)
    rb.sb.check()
    assert rb.status() == rb.status_expected[-1]


@cocotb.test()
async def reset_mid_layer(dut):
    """Reset after half a layer (and again during a read-out): nothing from before it comes out,
    and the following layers are bit-exact."""
    rb = RouterBench(dut, idle=random_pattern(0.7, seed=11), backpressure=random_pattern(0.5, 12))
    cfg = rb.cfg
    rng = np.random.default_rng(13)
    tokens = cfg.model.tokens
    await rb.tb.reset()
    rb.src.extend(rb.beats(random_logits(cfg, tokens, rng, 300.0)))
    await rb.tb.cycles(tokens * rb.r // 2)
    await rb.tb.reset(cycles=3)
    await rb.layer_run(random_logits(cfg, tokens, rng, 300.0))
    # reset during a read-out
    await rb.src.send(rb.beats(random_logits(cfg, tokens, rng, 300.0)))
    await rb.flush.send([{"discard": 0}])
    await rb.snk.wait_for(rb.snk.count + 2)
    await rb.tb.reset(cycles=2)
    rb.entries = rb.snk.count
    await rb.tb.cycles(1)
    assert int(dut.o__valid.value) == 0 and int(dut.busy.value) == 0
    await rb.layer_run(random_logits(cfg, tokens, rng, 300.0))
    assert rb.sb.mismatches == [] and rb.sb.flushed > 0


@cocotb.test()
async def cycles_match_timing(dut):
    """No stalls: the flush of a layer is accepted exactly ``timing.cycles(cfg, tokens)`` cycles
    after its first logit (the cycle after the last queue write), the first entry is valid
    ``timing.READOUT_FIRST`` cycles after the flush, and the router is idle
    ``timing.readout_cycles`` after it."""
    rb = RouterBench(dut, idle=always(), backpressure=always())
    cfg = rb.cfg
    rng = np.random.default_rng(14)
    await rb.tb.reset()
    for tokens in (1, 2, cfg.model.tokens):
        logits = random_logits(cfg, tokens, rng, 300.0)
        first = len(rb.src.beats)
        out_first = rb.snk.count
        entries_before = rb.entries
        rb.src.extend(rb.beats(logits))
        await rb.src.wait_idle()
        await rb.flush.send([{"discard": 0}])
        flush_cycle = rb.flush.beats[-1].cycle
        start = rb.src.beats[first].cycle
        assert flush_cycle - start == timing.cycles(cfg, tokens), \
            (tokens, flush_cycle - start, timing.cycles(cfg, tokens))
        idle_at = await idle_cycle(rb, dut, 10 * tokens * cfg.model.top_k + 10)
        entries = rb.entries - entries_before
        await rb.snk.wait_for(rb.entries)
        if entries:
            assert rb.snk.beats[out_first].cycle - flush_cycle == timing.READOUT_FIRST
            assert rb.snk.beats[-1].cycle - flush_cycle == entries + timing.READOUT_FIRST - 1
        assert idle_at - flush_cycle == timing.readout_cycles(cfg, entries), \
            (entries, idle_at - flush_cycle, timing.readout_cycles(cfg, entries))
        dut._log.info("cycles: %d tokens -> flush at %d (timing %d), %d entries read out",
                      tokens, flush_cycle - start, timing.cycles(cfg, tokens), entries)
    rb.sb.check()


# --------------------------------------------------------------------------------------------
# pytest entry points
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_router(variant):
    cfg = variant_config(variant)
    runner.run_component(f"moeaccel_router_{variant.replace('-', '_')}", lambda: Router(cfg),
                         __name__, key=json.dumps(VARIANTS[variant]),
                         extra_env={"ROUTER_VARIANT": variant})
