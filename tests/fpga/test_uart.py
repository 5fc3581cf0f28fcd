"""hw/uart.py: bit timing, loopback under back-pressure, framing errors."""

import random

from amaranth import Module
from amaranth.sim import Simulator

from hw.uart import UartRx, UartTx, divisor

DIV = 8


def test_divisor():
    assert divisor(100e6, 115_200) == 868
    assert divisor(25e6, 1_000_000) == 25


async def send_bits(ctx, rx, byte, div, stop=1):
    for bit in [0, *[(byte >> i) & 1 for i in range(8)], stop]:
        ctx.set(rx, bit)
        await ctx.tick().repeat(div)
    ctx.set(rx, 1)


def test_tx_waveform_is_8n1_at_the_baud_rate():
    tx = UartTx(DIV)
    sim = Simulator(tx)
    sim.add_clock(1e-8)
    seen = []

    async def bench(ctx):
        for byte in (0xA5, 0x00, 0xFF):
            ctx.set(tx.data.valid, 1)
            ctx.set(tx.data.payload, byte)
            await ctx.tick().until(tx.data.ready)
            ctx.set(tx.data.valid, 0)
            # find the start bit, then sample each bit in its middle
            while ctx.get(tx.tx):
                await ctx.tick()
            await ctx.tick().repeat(DIV // 2)
            bits = []
            for _ in range(10):
                bits.append(ctx.get(tx.tx))
                await ctx.tick().repeat(DIV)
            assert bits[0] == 0 and bits[9] == 1
            seen.append(sum(b << i for i, b in enumerate(bits[1:9])))

    sim.add_testbench(bench)
    sim.run()
    assert seen == [0xA5, 0x00, 0xFF]


def test_loopback_with_back_pressure_loses_nothing():
    m = Module()
    m.submodules.tx = tx = UartTx(DIV)
    m.submodules.rx = rx = UartRx(DIV)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(1)
    sent = [rng.randrange(256) for _ in range(60)] + [0x00, 0xFF, 0x55]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def producer(ctx):
        for byte in sent:
            ctx.set(tx.data.valid, 1)
            ctx.set(tx.data.payload, byte)
            await ctx.tick().until(tx.data.ready)
            ctx.set(tx.data.valid, 0)
            for _ in range(rng.randrange(3)):
                await ctx.tick()

    async def consumer(ctx):
        while len(got) < len(sent):
            ctx.set(rx.data.ready, rng.random() < 0.3)   # slow, but faster than a byte time
            await ctx.tick()
        assert not ctx.get(rx.overrun) and not ctx.get(rx.framing_error)

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(rx.data.valid, rx.data.ready,
                                                                   rx.data.payload):
            if valid and ready:
                got.append(payload)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert got == sent


def test_rx_tolerates_baud_mismatch_and_flags_framing_errors():
    rx = UartRx(DIV * 4)
    sim = Simulator(rx)
    sim.add_clock(1e-8)
    got = []

    async def bench(ctx):
        ctx.set(rx.data.ready, 1)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        for byte, div in ((0x3C, DIV * 4 - 1), (0xC3, DIV * 4 + 1)):   # 3% off either way
            await send_bits(ctx, rx.rx, byte, div)
            await ctx.tick().repeat(DIV)
        assert not ctx.get(rx.framing_error)
        await send_bits(ctx, rx.rx, 0x81, DIV * 4, stop=0)
        await ctx.tick().repeat(3 * DIV)
        assert ctx.get(rx.framing_error)

    async def monitor(ctx):
        async for _, _, valid, payload in ctx.tick().sample(rx.data.valid, rx.data.payload):
            if valid:
                got.append(payload)

    sim.add_testbench(bench)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert got == [0x3C, 0xC3]
