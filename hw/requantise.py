"""The compute unit's output stage: requantise one beat of accumulators (``cols`` lanes, or
``compute_unit.output_lanes``)."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts, out_bits
from hw.multiplier import STAGES as MULTIPLIER_STAGES, Multiplier
from golden.fixed import smax, smin
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
    3. arithmetic shift right by ``shift`` (a 5-level barrel shifter; each lane's amount from a
       register of its own, see :func:`_shift_copies`);
    4. saturation into the output register, or, with ``registered_output=False``, onto ``o``
       combinationally (the consumer's storage, e.g. the credit buffer's FIFO, is then the fifth
       register): the format's limit where stage 3's overflow flags say so (``t >= (max + 1)
       << shift`` or ``t < min << shift``: compares of the sum with limits registered from the
       beat's settings, in parallel with the shift: both formats' limits shifted in stage 1,
       the beat's chosen in stage 2), else the shifted value's low bits.

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

        # stage 3: arithmetic shift, each lane's from its own copy of the amount; in parallel,
        # whether the shifted value leaves the beat's format, as compares of the sum with the
        # format's limits scaled by 2**shift (registered with the sums):
        # floor(t / 2**s) > max <=> t >= (max + 1) << s;  floor(t / 2**s) < min <=> t < min << s
        shifted = [register(signed(wide), f"shifted_{c}") for c in range(cols)]
        shifts = _shift_copies(m, self.i.p.shift, MULTIPLIER_STAGES + 1, cols)
        for c in range(cols):
            m.d.sync += shifted[c].eq(total[c] >> shifts[c])
        # The limits of both formats are shifted by the amount a stage earlier (from the
        # settings' first register, no format select in front of the shift), then the beat's
        # format picks its pair (one 3-input LUT per bit).
        limit_shape = signed(max(sum_shape.width, wide + cu.requant_max_shift + 1))
        settings1 = metas[MULTIPLIER_STAGES - 1]
        limits = {}
        for name, value in (("above_wide", smax(wide) + 1), ("above_narrow", smax(narrow) + 1),
                            ("below_wide", smin(wide)), ("below_narrow", smin(narrow))):
            limits[name] = register(limit_shape, name)
            m.d.sync += limits[name].eq(Const(value, limit_shape) << settings1.shift)
        early = metas[MULTIPLIER_STAGES]
        above, below = register(limit_shape, "above"), register(limit_shape, "below")
        m.d.sync += [
            above.eq(Mux(early.wide, limits["above_wide"], limits["above_narrow"])),
            below.eq(Mux(early.wide, limits["below_wide"], limits["below_narrow"])),
        ]
        high = [register(1, f"high_{c}") for c in range(cols)]
        low = [register(1, f"low_{c}") for c in range(cols)]
        for c in range(cols):
            m.d.sync += [high[c].eq(total[c] >= above), low[c].eq(total[c] < below)]

        # stage 4: saturate (into the output register, or onto ``o``): the limit on an overflow
        # flag, else the shifted value's low bits (sign-extended from the beat's format)
        meta, valid = metas[-1], valids[-1]
        out = m.d.sync if self.registered_output else m.d.comb
        out += [self.o.valid.eq(valid), self.o.p.row.eq(meta.row),
                self.o.p.last.eq(meta.last), self.o.p.gelu.eq(meta.gelu),
                self.o.p.act_multiplier.eq(meta.act_multiplier),
                self.o.p.act_shift.eq(meta.act_shift)]
        for c in range(cols):
            fits = Mux(meta.wide, shifted[c][:wide].as_signed(), shifted[c][:narrow].as_signed())
            out += self.o.p.data[c].eq(
                Mux(high[c], Mux(meta.wide, smax(wide), smax(narrow)),
                    Mux(low[c], Mux(meta.wide, smin(wide), smin(narrow)), fits)))
        return m


def _shift_copies(m: Module, shift: Value, stages: int, copies: int) -> list[Value]:
    """``copies`` values of ``shift`` delayed by ``stages`` registers, each ending in a register
    of its own (up to ``2 ** stages`` of them; more share them in turn), so each lane's barrel
    shifter has its own amount instead of all lanes loading one register.

    Yosys merges flip-flops with the same input, so copy ``j`` is kept distinct by its
    polarity pattern: after stage ``s`` it holds the amount inverted when bit ``s`` of ``j`` is
    set (each register loads its predecessor, or its inverse where the pattern changes); the
    last inversion folds into the shifter's multiplexers. Early stages with the same pattern
    prefix are shared, which only costs them a small fan-out."""
    chains: dict[tuple[int, ...], Signal] = {}

    def chain(pattern: tuple[int, ...]) -> Signal:
        if pattern not in chains:
            prev, prev_inv = (shift, 0) if len(pattern) == 1 else (chain(pattern[:-1]), pattern[-2])
            reg = Signal.like(shift, name="shift_" + "".join(map(str, pattern)), reset_less=True)
            m.d.sync += reg.eq(~prev if pattern[-1] != prev_inv else prev)
            chains[pattern] = reg
        return chains[pattern]

    out = []
    for c in range(copies):
        j = c % (1 << stages)
        pattern = tuple((j >> s) & 1 for s in range(stages))
        reg = chain(pattern)
        out.append(~reg if pattern[-1] else reg)
    return out
