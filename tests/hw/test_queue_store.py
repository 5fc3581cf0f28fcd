"""hw/queue_store.py in Amaranth's simulator: the router's read-out stored, then replayed on both
ports (stored queues and the identity queue) under random back-pressure with long stalls and
back-to-back commands: every entry exactly once, in order, and every cycle's ``o.valid``,
payload and ``cmd.ready`` as the timing contract (:mod:`sim.timing.queue_store`) describes it:
an output register issued straight by ``o.ready``, one read stage, one entry per cycle.

Run: ``python -m pytest tests/hw/test_queue_store.py -q``.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.queue_store import QueueStore
from moeaccel import config
from sim.timing.queue_store import READ_STAGES


class ContractModel:
    """One replay port cycle by cycle as the contract states it: ``cmd.ready`` while idle; an
    entry is read and registered onto ``o`` in every cycle the port is busy and ``o`` is empty
    or taken (``READ_STAGES`` = 1)."""

    def __init__(self, store: list[tuple[int, int]], one: int):
        self.store, self.one = store, one
        self.busy, self.valid, self.data = False, False, None
        self.cmd = None
        self.index = 0

    def outputs(self) -> tuple[bool, bool, tuple[int, int] | None]:
        return not self.busy, self.valid, self.data if self.valid else None

    def step(self, cmd: tuple[int, int, int] | None, ready: bool):
        advance = not self.valid or ready
        idle = not self.busy
        issue = advance and self.busy
        entry = None
        if issue:
            queue, start, count = self.cmd
            entry = self.store[start + self.index] if queue else (self.index, self.one)
            self.index += 1
            if self.index == count:
                self.busy = False
        if cmd is not None and idle:
            self.busy, self.cmd, self.index = True, cmd, 0
        if advance:
            self.valid, self.data = issue, entry


@pytest.mark.parametrize("ready_p", [1.0, 0.7, 0.3])
def test_replay_matches_contract(ready_p: float):
    cfg = config.load("tiny")
    dut = QueueStore(cfg)
    rng = random.Random(int(ready_p * 100))
    m = cfg.model
    entries = m.tokens * m.top_k
    assert READ_STAGES == 1
    gate_max = (1 << len(dut.i.p.gate)) - 1
    token_max = m.tokens - 1
    stored = [(rng.randint(0, token_max), rng.choice([0, gate_max, rng.randint(0, gate_max)]))
              for _ in range(entries)]
    one = 1 << cfg.hardware.softmax.prob_frac_bits

    def commands():
        cmds = [(1, 0, entries), (0, 0, m.tokens), (1, entries - 1, 1), (0, 0, 1)]
        for _ in range(12):
            start = rng.randrange(entries)
            cmds.append((1, start, rng.randint(1, entries - start)))
            cmds.append((0, 0, rng.randint(1, m.tokens)))
        return cmds

    async def bench(ctx):
        await ctx.tick()                    # the store empties itself after a reset
        # store the read-out: one entry per cycle
        for i, (token, gate) in enumerate(stored):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.p.token, token)
            ctx.set(dut.i.p.gate, gate)
            ctx.set(dut.i.p.last, i == entries - 1)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        ports = {name: (getattr(dut, f"{name}_cmd"), getattr(dut, name), commands(),
                        ContractModel(stored, one)) for name in ("tokens", "routes")}
        for p in ports.values():
            p[3].expect = [e for q, s, c in p[2]
                           for e in (stored[s:s + c] if q else [(i, one) for i in range(c)])]
            p[3].got = []
            p[3].stall = 0
        cycles = 0
        while any(p[3].got != p[3].expect for p in ports.values()):
            decided = {}
            for name, (cmd, o, pending, model) in ports.items():
                offer = bool(pending) and rng.random() < 0.8
                if offer:
                    q, s, c = pending[0]
                    ctx.set(cmd.valid, 1)
                    ctx.set(cmd.p.queue, q)
                    ctx.set(cmd.p.start, s)
                    ctx.set(cmd.p.count, c)
                else:
                    ctx.set(cmd.valid, 0)
                if model.stall:
                    model.stall -= 1
                    ready = False
                else:
                    ready = rng.random() < ready_p
                    if ready_p < 1 and rng.random() < 0.02:
                        model.stall = rng.randint(5, 40)
                ctx.set(o.ready, ready)
                decided[name] = (offer, ready)
            await ctx.delay(1e-9)
            for name, (cmd, o, pending, model) in ports.items():
                offer, ready = decided[name]
                cmd_ready, valid, data = model.outputs()
                assert ctx.get(cmd.ready) == cmd_ready, (name, cycles)
                assert ctx.get(o.valid) == valid, (name, cycles)
                if valid:
                    got = (ctx.get(o.p.token), ctx.get(o.p.gate))
                    assert got == data, (name, cycles)
                    if ready:
                        model.got.append(got)
                accepted = offer and cmd_ready
                model.step(pending[0] if accepted else None, ready)
                if accepted:
                    pending.pop(0)
            await ctx.tick()
            cycles += 1
            assert cycles < 50_000, "stuck"
            for p in ports.values():
                assert len(p[3].got) <= len(p[3].expect)
        for name, (cmd, o, pending, model) in ports.items():
            assert not pending and model.got == model.expect, name

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
