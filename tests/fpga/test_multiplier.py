"""hw/multiplier.py: the MULT18X18D that Multiplier makes for ECP5 is wired as Yosys wires the DSP
it infers for the same product (every operand, product and signedness pin), with its input and
output registers on, and the simulation model multiplies exactly through two enabled stages."""

from __future__ import annotations

import random

import pytest
from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.back import rtlil
from amaranth.sim import Simulator

from fpga.boards.ulx3s import platform
from hw.multiplier import STAGES, Multiplier, fits_dsp, product_shape
from tests.fpga.hard_block_wiring import hard_block_wiring

#: operand shapes the engine multiplies: requantiser chunks (unsigned 17 x signed), the top
#: chunk (signed x signed), a row base (unsigned x unsigned), and the widest of each
SHAPES = [(unsigned(17), signed(16)), (signed(9), signed(16)), (unsigned(6), unsigned(12)),
          (signed(18), signed(18)), (unsigned(18), unsigned(18))]
DSP_PINS = ("A", "B", "P")


def _top(a_shape: Shape, b_shape: Shape, ours: bool) -> str:
    """RTLIL of a product between named top-level ports: Multiplier (ECP5), or ``a * b``."""
    m = Module()
    a, b = Signal(a_shape, name="a"), Signal(b_shape, name="b")
    p = Signal(product_shape(a_shape, b_shape), name="p")
    if ours:
        m.submodules.mul = mul = Multiplier(a_shape, b_shape)
        m.d.comb += [mul.a.eq(a), mul.b.eq(b), p.eq(mul.p)]
    else:
        m.d.comb += p.eq(a * b)
    return rtlil.convert(m, ports=[a, b, p], platform=platform() if ours else None)


def _dsp_wiring(il: str, work) -> tuple[dict[str, set[str]], list[dict]]:
    """Per top-level port bit, the MULT18X18D operand/product pins on it; each one's parameters."""
    return hard_block_wiring(il, work, "MULT18X18D", DSP_PINS)


@pytest.mark.parametrize("a_shape, b_shape", SHAPES, ids=str)
def test_dsp_pins_as_yosys_wires_them(a_shape, b_shape, tmp_path):
    (tmp_path / "inferred").mkdir()
    (tmp_path / "ours").mkdir()
    inferred, _ = _dsp_wiring(_top(a_shape, b_shape, ours=False), tmp_path / "inferred")
    ours, params = _dsp_wiring(_top(a_shape, b_shape, ours=True), tmp_path / "ours")
    assert len(params) == 1
    # every operand bit lands on the pins Yosys puts it on (Yosys may swap the operands)
    operands = {k: v for k, v in ours.items() if k[:2] in ("a[", "b[")}
    swapped = {k: {{"A": "B", "B": "A"}[pin[0]] + pin[1:] for pin in v} for k, v in operands.items()}
    assert {k: v for k, v in inferred.items() if k[:2] in ("a[", "b[")} in (operands, swapped)
    # product bit i is pin Pi; Yosys names the top bits it knows are sign copies after the
    # last significant pin, so its product pins are ours up to the bits it merged
    width = product_shape(a_shape, b_shape).width
    assert [ours[f"p[{i}]"] for i in range(width)] == [{f"P{i}"} for i in range(width)]
    assert all(pins <= {f"P{j}" for j in range(int(k[2:-1]) + 1)}
               for k, pins in inferred.items() if k.startswith("p["))
    (reg,) = params
    assert [reg[f"REG_{r}_CLK"] for r in ("INPUTA", "INPUTB", "OUTPUT")] == ["CLK0"] * 3
    assert reg["REG_PIPELINE_CLK"] == "NONE"


def test_wide_operands_fall_back_to_inferred_logic():
    assert fits_dsp(signed(18), unsigned(17)) and fits_dsp(unsigned(18), unsigned(18))
    assert not fits_dsp(signed(18), unsigned(18))
    assert not fits_dsp(unsigned(19), unsigned(4))


@pytest.mark.parametrize("a_shape, b_shape", SHAPES, ids=str)
def test_simulation_multiplies_through_two_enabled_stages(a_shape, b_shape):
    dut = Multiplier(a_shape, b_shape)
    rng = random.Random(str(a_shape) + str(b_shape))

    def extremes(s: Shape) -> list[int]:
        lo, hi = (-(1 << s.width - 1), (1 << s.width - 1) - 1) if s.signed else (0, (1 << s.width) - 1)
        return [lo, hi, 0, -1 if s.signed else 1] + [rng.randint(lo, hi) for _ in range(60)]

    pairs = list(zip(extremes(a_shape), extremes(b_shape)))

    async def bench(ctx):
        fed: list[tuple[int, int]] = []    # operands taken, in order
        seen: list[int] = []
        i = 0
        for _ in range(4 * len(pairs)):
            en = rng.random() < 0.7
            a, b = pairs[i % len(pairs)]
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            await ctx.tick()
            if en:
                fed.append((a, b))
                i += 1
                if len(fed) > STAGES:
                    seen.append(ctx.get(dut.p))
            else:    # a held pipeline keeps its output
                if len(fed) >= STAGES:
                    assert ctx.get(dut.p) == fed[len(fed) - STAGES][0] * fed[len(fed) - STAGES][1]
        assert seen == [a * b for a, b in fed[1:len(seen) + 1]]
        assert len(seen) > len(pairs)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
