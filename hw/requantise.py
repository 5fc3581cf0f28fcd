"""The compute unit's output stage: requantise one beat of accumulators (``cols`` lanes, or
``compute_unit.output_lanes``)."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts, out_bits
from hw.multiplier import STAGES as MULTIPLIER_STAGES, Multiplier
from hw.saturate import saturate
from moeaccel.config import DesignConfig
from sim.timing import compute_unit as timing


#: Width of the unsigned low chunks the accumulator is cut into for the product: an unsigned
#: 17-bit chunk fits a signed 18-bit multiplier input (ECP5 MULT18X18D, Xilinx DSP48 B port), so
#: each partial product is one hard multiplier and lands in a register of its own.
CHUNK_BITS = 17


class Requantiser(wiring.Component):
    """``saturate(shift_round(acc * multiplier, shift), bits)`` on every lane, exactly
    :func:`golden.fixed.requantise` with the config's rounding; ``bits`` is ``operand_bits``, or
    :func:`hw.compute_unit_layouts.out_bits` when the beat's ``wide`` flag is set.

    Pipeline (``sim.timing.compute_unit.REQUANT_STAGES`` = 5 registers), always advancing (no
    back-pressure: the compute unit's :class:`hw.credit_buffer.CreditBuffer` reserves room for
    every beat before it enters):

    0. the partial-product multipliers' operand registers (:class:`hw.multiplier.Multiplier`,
       the DSPs' own input registers: ``i`` should come straight from registers, as the route
       into the DSP column is long);
    1. partial products ``acc[17j : 17j+17] * multiplier`` (one hard multiplier each, the top
       chunk signed; the DSPs' output registers) and the rounding constant ``2**(shift-1)``
       (``half_up``; 0 for ``truncate`` or shift 0);
    2. ``sum_j (p_j << 17j) + half`` (equal to ``acc * multiplier + half``);
    3. arithmetic shift right by ``shift`` (a 5-level barrel shifter);
    4. saturation into the output register, or, with ``registered_output=False``, onto ``o``
       combinationally (the consumer's storage, e.g. the credit buffer's FIFO, is then the fifth
       register).

    One beat per cycle, latency 5 cycles from ``i`` to ``o`` (4 with ``registered_output=False``).
    A beat has ``lanes`` lanes (default ``cols``), each with its own partial-product multipliers.
    ``acc_bits`` (default ``accumulator_bits``) is the width the ``acc`` lanes' values are known
    to fit (signed): only those bits are multiplied, so a narrower input (the fused activation's
    GELU output) takes fewer multipliers and shorter sums. Data registers have no reset.

    Members
    -------
    i : In(stream of ``Layouts.drain``, always ready)
    o : Out(stream of ``Layouts.requantised``, always ready): ``out``'s fields, the activation
        settings passed through
    """

    def __init__(self, cfg: DesignConfig, *, lanes: int | None = None,
                 registered_output: bool = True, acc_bits: int | None = None):
        self.cfg = cfg
        self.registered_output = registered_output
        self.acc_bits = cfg.hardware.compute_unit.accumulator_bits if acc_bits is None else acc_bits
        if not 1 < self.acc_bits <= cfg.hardware.compute_unit.accumulator_bits:
            raise ValueError(f"acc_bits must be 2..accumulator_bits, got {self.acc_bits}")
        lay = Layouts(cfg, lanes)
        self.lanes = lay.drain["acc"].shape.length
        super().__init__({
            "i": In(stream.Signature(lay.drain, always_ready=True)),
            "o": Out(stream.Signature(lay.requantised, always_ready=True)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        cols, acc_bits = self.lanes, self.acc_bits
        assert timing.REQUANT_STAGES == MULTIPLIER_STAGES + 3
        prod_shape = signed(acc_bits + cu.requant_multiplier_bits + 1)
        sum_shape = signed(prod_shape.width + 1)
        narrow, wide = cu.operand_bits, out_bits(self.cfg)
        chunks = range(0, acc_bits, CHUNK_BITS)

        def register(shape, name: str) -> Signal:
            return Signal(shape, name=name, reset_less=True)

        # the beat's settings and valid flag, alongside the pipeline stages
        metas, valids = [self.i.p], [self.i.valid]
        for k in range(MULTIPLIER_STAGES + 2):
            meta, valid = register(self.i.p.shape(), f"meta{k}"), Signal(name=f"valid{k}")
            m.d.sync += [meta.eq(metas[-1]), valid.eq(valids[-1])]
            metas.append(meta)
            valids.append(valid)

        # stages 0-1: partial products (the multipliers' two stages) and the rounding constant
        part = [[] for _ in range(cols)]
        for c in range(cols):
            acc = self.i.p.acc[c]
            for j, lo in enumerate(chunks):
                hi = min(lo + CHUNK_BITS, acc_bits)
                chunk = acc[lo:hi].as_signed() if hi == acc_bits else acc[lo:hi]
                mul = Multiplier(chunk.shape(), self.i.p.multiplier.shape())
                m.submodules[f"mul_{c}_{lo}"] = mul
                m.d.comb += [mul.a.eq(chunk), mul.b.eq(self.i.p.multiplier)]
                part[c].append(mul.p)
        half = register(cu.requant_max_shift, "half")       # 2**(shift-1), 0 for shift 0
        if cu.rounding == "half_up":
            m.d.sync += half.eq((Const(1, 2) << metas[MULTIPLIER_STAGES - 1].shift) >> 1)
        else:
            m.d.sync += half.eq(0)

        # stage 2: recombine the partial products with the rounding constant
        total = [register(sum_shape, f"sum_{c}") for c in range(cols)]
        for c in range(cols):
            m.d.sync += total[c].eq(sum((p << lo for p, lo in zip(part[c], chunks)), half))

        # stage 3: arithmetic shift
        shifted = [register(sum_shape, f"shifted_{c}") for c in range(cols)]
        shift = metas[MULTIPLIER_STAGES + 1].shift
        for c in range(cols):
            m.d.sync += shifted[c].eq(total[c] >> shift)

        # stage 4: saturate (into the output register, or onto ``o``)
        meta, valid = metas[-1], valids[-1]
        out = m.d.sync if self.registered_output else m.d.comb
        out += [self.o.valid.eq(valid), self.o.p.row.eq(meta.row),
                self.o.p.last.eq(meta.last), self.o.p.gelu.eq(meta.gelu),
                self.o.p.act_multiplier.eq(meta.act_multiplier),
                self.o.p.act_shift.eq(meta.act_shift)]
        for c in range(cols):
            out += self.o.p.data[c].eq(Mux(meta.wide, saturate(shifted[c], wide),
                                           saturate(shifted[c], narrow)))
        return m
