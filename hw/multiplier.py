"""A two-stage pipelined multiplier that uses the ECP5 DSP's own registers.

Yosys maps ``a * b`` to a MULT18X18D with every register off, so a multiply costs the DSP's
combinational delay plus the long routes into and out of the DSP column in one cycle: about
9 ns on a speed-6 ECP5-85F (3.2 ns in, 3.9 ns through the DSP, 1.9 ns out, measured on the
``ulx3s`` engine), the whole budget at 100 MHz. With the DSP's input and output registers on,
the route in and the route out each get a cycle of their own, and the multiply sits between two
registers inside the block.
"""

from __future__ import annotations

from amaranth import ClockSignal, Instance, Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.block_ram import is_ecp5

#: operand width of the ECP5 MULT18X18D (signed, or unsigned when SIGNEDx is low)
DSP_OPERAND_BITS = 18
#: product bits of the MULT18X18D
DSP_PRODUCT_BITS = 36
#: register stages from ``a``/``b`` to ``p``: the DSP's input registers, then its output register
STAGES = 2


def product_shape(a: Shape, b: Shape) -> Shape:
    """The exact shape of ``a * b`` (as Amaranth types the product)."""
    width = a.width + b.width + (a.signed != b.signed)
    return signed(width) if a.signed or b.signed else unsigned(width)


def fits_dsp(a: Shape, b: Shape) -> bool:
    """Whether ``a * b`` fits one MULT18X18D (the unsigned operand of a mixed product takes a
    sign bit)."""
    mixed = a.signed != b.signed
    return all(s.width + (mixed and not s.signed) <= DSP_OPERAND_BITS for s in (a, b))


class Multiplier(wiring.Component):
    """``p = a * b``, exact, with the operands of :data:`STAGES` (2) enabled cycles earlier:
    stage 1 registers ``a`` and ``b``, stage 2 registers the product. Both stages advance on
    cycles with ``en`` high (default 1) and hold otherwise; the registers have no reset.
    Throughput one product per enabled cycle.

    On an ECP5 platform, when both operands fit one MULT18X18D (18 bits signed or unsigned, or
    a mix of a signed operand with an unsigned one of up to 17 bits), it is that DSP with
    ``REG_INPUTA/B`` and ``REG_OUTPUT`` on (Yosys never infers them). Elsewhere (simulation,
    other vendors, wider operands) it is an inferred ``a * b`` between the same two registers.

    Members
    -------
    a, b : In(the operand shapes)
    en : In(1), default 1
    p : Out(:func:`product_shape`)
    """

    def __init__(self, a_shape: Shape, b_shape: Shape):
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        super().__init__({"a": In(self.a_shape), "b": In(self.b_shape), "en": In(1, init=1),
                          "p": Out(product_shape(self.a_shape, self.b_shape))})

    def elaborate(self, platform) -> Module:
        m = Module()
        if is_ecp5(platform) and fits_dsp(self.a_shape, self.b_shape):
            self._mult18x18d(m)
            return m
        a = Signal(self.a_shape, name="a_reg", reset_less=True)
        b = Signal(self.b_shape, name="b_reg", reset_less=True)
        with m.If(self.en):
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.p.eq(a * b)]
        return m

    def _mult18x18d(self, m: Module) -> None:
        both_signed = self.a_shape.signed or self.b_shape.signed
        # a mixed product becomes signed x signed: the unsigned operand gains a zero sign bit
        operand = signed(DSP_OPERAND_BITS) if both_signed else unsigned(DSP_OPERAND_BITS)
        a, b = Signal(operand, name="dsp_a"), Signal(operand, name="dsp_b")
        p = Signal(DSP_PRODUCT_BITS, name="dsp_p")
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(p[:len(self.p)])]
        registers = {f"p_REG_{reg}_{kind}": f"{kind}0" for reg in ("INPUTA", "INPUTB", "OUTPUT")
                     for kind in ("CLK", "CE", "RST")}
        ports = {
            **registers, "p_REG_INPUTC_CLK": "NONE", "p_REG_PIPELINE_CLK": "NONE",
            "p_CLK0_DIV": "ENABLED", "p_CLK1_DIV": "ENABLED", "p_CLK2_DIV": "ENABLED",
            "p_CLK3_DIV": "ENABLED", "p_HIGHSPEED_CLK": "NONE", "p_GSR": "DISABLED",
            "p_CAS_MATCH_REG": "FALSE", "p_SOURCEB_MODE": "B_SHIFT", "p_MULT_BYPASS": "DISABLED",
            "p_RESETMODE": "SYNC",
            "i_SIGNEDA": int(both_signed), "i_SIGNEDB": int(both_signed),
            "i_SOURCEA": 0, "i_SOURCEB": 0, "i_CLK0": ClockSignal("sync"), "i_CE0": self.en,
            "i_RST0": 0,
            # the cascade inputs SRIA/SRIB and the unused clocks stay unconnected, as Yosys
            # leaves them: nextpnr cannot route a constant to the cascade pins
            **{f"i_A{j}": a[j] for j in range(DSP_OPERAND_BITS)},
            **{f"i_B{j}": b[j] for j in range(DSP_OPERAND_BITS)},
            **{f"i_C{j}": 0 for j in range(DSP_OPERAND_BITS)},
            **{f"o_P{j}": p[j] for j in range(DSP_PRODUCT_BITS)},
        }
        m.submodules.dsp = Instance("MULT18X18D", **ports)
