"""hw/constant_product.py: ``times_constant`` equals the product for every value of a 9-bit
signal and of a signed one, for constants with one, several or no set bits."""

from __future__ import annotations

import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from hw.constant_product import times_constant

CONSTANTS = (0, 1, 8, 24, 25, 200)


@pytest.mark.parametrize("shape", [9, signed(9)], ids=str)
def test_times_constant_is_the_product(shape):
    x = Signal(shape)
    products = {k: Signal(signed(24), name=f"p{k}") for k in CONSTANTS}
    m = Module()
    for k, p in products.items():
        m.d.comb += p.eq(times_constant(x, k))

    async def bench(ctx):
        low, high = (-256, 256) if x.shape().signed else (0, 512)
        for v in range(low, high):
            ctx.set(x, v)
            assert [ctx.get(p) for p in products.values()] == [v * k for k in CONSTANTS], v

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_negative_constant_is_refused():
    with pytest.raises(ValueError, match="-3"):
        times_constant(Signal(4), -3)
