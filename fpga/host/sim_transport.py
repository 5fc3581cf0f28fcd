"""A transport into the host bridge running in Amaranth's Python simulator.

Bytes are injected at the byte-stream level, below the UART (which :mod:`hw.uart` tests cover
on their own), so a round trip costs cycles per byte rather than ``10 * divisor``. Two background
testbenches move bytes between Python queues and the bridge's ``rx``/``tx`` streams; each
:meth:`SimTransport.read` advances the simulation by ``chunk_cycles``.
"""

from __future__ import annotations

from collections import deque

from amaranth.sim import Simulator

from hw.host_bridge import HostBridge


class SimTransport:
    """Drive ``bridge`` (a :class:`~hw.host_bridge.HostBridge`) as if it were a board.

    ``rx_gaps``/``tx_stalls`` are iterables of booleans (cycled) that idle the request stream or
    back-pressure the response stream on a cycle, to exercise the bridge's handshakes.
    """

    PERIOD = 1e-8

    def __init__(self, bridge: HostBridge, chunk_cycles: int = 200, rx_gaps=None, tx_stalls=None,
                 vcd: str | None = None):
        self.bridge = bridge
        self.chunk_cycles = chunk_cycles
        self._to_dut: deque[int] = deque()
        self._from_dut = bytearray()
        self._now = 0.0
        self.cycles = 0
        self._rx_gaps = _cycle(rx_gaps)
        self._tx_stalls = _cycle(tx_stalls)
        self.sim = Simulator(bridge)
        self.sim.add_clock(self.PERIOD)
        self.sim.add_testbench(self._feed, background=True)
        self.sim.add_testbench(self._drain, background=True)
        self._vcd = None
        if vcd:
            self._vcd = self.sim.write_vcd(vcd)
            self._vcd.__enter__()

    async def _feed(self, ctx):
        rx = self.bridge.rx
        while True:
            if self._to_dut and not next(self._rx_gaps):
                ctx.set(rx.valid, 1)
                ctx.set(rx.payload, self._to_dut[0])
                await ctx.tick().until(rx.ready)
                self._to_dut.popleft()
                ctx.set(rx.valid, 0)
            else:
                await ctx.tick()

    async def _drain(self, ctx):
        tx = self.bridge.tx
        async for clk_edge, rst, valid, payload in ctx.tick().sample(tx.valid, tx.payload):
            if valid and ctx.get(tx.ready):
                self._from_dut.append(payload)
            ctx.set(tx.ready, 0 if next(self._tx_stalls) else 1)

    def write(self, data: bytes) -> None:
        self._to_dut.extend(data)

    def read(self) -> bytes:
        self._now += self.chunk_cycles * self.PERIOD
        self.sim.run_until(self._now)
        self.cycles += self.chunk_cycles
        data, self._from_dut = bytes(self._from_dut), bytearray()
        return data

    def close(self) -> None:
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
            self._vcd = None


def _cycle(pattern):
    import itertools
    return itertools.cycle(pattern) if pattern is not None else itertools.repeat(False)
