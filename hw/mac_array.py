"""The output-stationary ``rows x cols`` MAC array with double-buffered accumulators."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts
from hw.multiplier import STAGES as MULTIPLIER_STAGES, Multiplier
from moeaccel.config import DesignConfig
from sim.timing import compute_unit as timing


class MacArray(wiring.Component):
    """``rows x cols`` multiply-accumulate cells; cell ``(r, c)`` accumulates token ``r`` times
    output feature ``c`` of the current tile.

    Every cycle with ``step_valid`` high is one array step: all ``rows * cols`` cells multiply
    ``a[r] * w[c]`` and add the product to their accumulator; on a tile's ``first`` step the
    product is added to ``bias[c]`` instead of the accumulator's old value. On a tile's ``last`` step the finished sums go to
    the shadow bank, which drains the tile's ``tile.rows`` valid rows while the next tile
    accumulates. A row leaves as ``row_cycles`` beats of ``lanes_out`` lanes (group ``g`` = lanes
    ``g*lanes_out ..``; one beat per row by default), one per ``drain`` handshake: the shadow
    bank is a shift register of lane groups, so a beat's lanes are the first group's registers
    themselves (no lane multiplexer between them and the requantiser's multipliers).

    Pipeline (``sim.timing.compute_unit.ARRAY_STAGES`` = 5 registers): operand registers (each
    ``a[r]`` drives the ``cols`` multipliers of its row and each ``w[c]`` the ``rows`` of its
    column: fan-out ``cols``/``rows``, never ``rows * cols``) -> the multipliers' input registers
    -> their product registers (:class:`hw.multiplier.Multiplier`: on ECP5 the MULT18X18D's own
    input and output registers, so the routes into and out of the DSP column each get a cycle,
    and the input registers load from the operand registers, not from the act/weight streams'
    multiplexers) -> accumulators (the product goes straight from the DSP's output register into
    the add's carry chain; the bias-or-running-sum select is on the other operand, between two
    fabric registers) -> shadow bank (loaded from the accumulators the cycle after a tile's last
    step). Throughput one step per cycle.

    The controller may assert a ``last`` step only while ``last_ok`` is high: a register, the
    look-ahead of "the shadow bank is free" (it drains no row and no ``last`` step is in
    flight), computed from this cycle's ``step_valid & last`` and the drain, so the
    controller's step decision starts at a flip-flop.

    Members
    -------
    step_valid, a, w, bias, first, last, tile : In
        One array step (``bias`` is read on ``first`` steps only, ``tile`` on ``last`` steps).
    last_ok : Out(1)
        A ``last`` step may be issued this cycle (a register; 1 after reset).
    drain : Out(stream)
        Lane groups of finished accumulators (``Layouts(cfg, lanes_out).drain``) with their
        tile's requantisation settings; ``last`` on every beat of the GEMM's last row.
    drain_row_start : Out(1)
        ``drain`` is valid and its beat is a row's first group (a register, the look-ahead of
        both, so a consumer's "take a row" decision starts at a flip-flop).
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.layouts = lay = Layouts(cfg)
        beat = Layouts(cfg, cfg.hardware.compute_unit.lanes_out)
        super().__init__({
            "step_valid": In(1),
            "a": In(lay.act),
            "w": In(lay.weight),
            "bias": In(lay.bias),
            "first": In(1),
            "last": In(1),
            "tile": In(lay.tile),
            "last_ok": Out(1, init=1),
            "drain": Out(stream.Signature(beat.drain)),
            "drain_row_start": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        rows, cols, lay = cu.rows, cu.cols, self.layouts
        assert timing.ARRAY_STAGES == MULTIPLIER_STAGES + 3

        # stage 0: operand registers
        a0 = Signal(lay.act, reset_less=True)
        w0 = Signal(lay.weight, reset_less=True)
        bias0 = Signal(lay.bias, reset_less=True)
        tile0 = Signal(lay.tile, reset_less=True)
        m.d.sync += [a0.eq(self.a), w0.eq(self.w), bias0.eq(self.bias), tile0.eq(self.tile)]
        # a step's valid and last flags through the operand, multiplier and accumulator stages:
        # ``[-2]`` goes with the products, ``[-1]`` with the accumulators
        valids, lasts = [self.step_valid], [self.step_valid & self.last]
        for k in range(MULTIPLIER_STAGES + 2):
            valid, last = Signal(name=f"valid{k}"), Signal(name=f"last{k}")
            m.d.sync += [valid.eq(valids[-1]), last.eq(lasts[-1])]
            valids.append(valid)
            lasts.append(last)
        valids, lasts = valids[1:], lasts[1:]
        # the product stage's valid, and the last flag one stage on, with the accumulators
        valid_p, last_a = valids[-2], lasts[-1]

        # stages 1-2: one Multiplier per cell, fed from the operand registers
        prod = [[None] * cols for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                mul = Multiplier(a0[r].shape(), w0[c].shape())
                m.submodules[f"mul_{r}_{c}"] = mul
                m.d.comb += [mul.a.eq(a0[r]), mul.b.eq(w0[c])]
                prod[r][c] = mul.p
        # the bias alongside the step to the product stage, the tile settings to the accumulators
        bias_p = bias0
        for k in range(1, MULTIPLIER_STAGES + 1):
            reg = Signal(lay.bias, name=f"bias{k}", reset_less=True)
            m.d.sync += reg.eq(bias_p)
            bias_p = reg
        tile_p = tile0
        for k in range(1, MULTIPLIER_STAGES + 2):
            reg = Signal(lay.tile, name=f"tile{k}", reset_less=True)
            m.d.sync += reg.eq(tile_p)
            tile_p = reg

        # stage 3: accumulators. A step's product, in the multipliers' output registers, is added
        # to the bias on a tile's first step, else to the running sum: the select is on the
        # other operand (two fabric registers and a per-column copy of the flag, so each copy
        # drives ``rows * width`` selects), so the route out of the DSP goes straight into the
        # carry chain and each sum bit only loads its accumulator.
        acc_shape = signed(cu.accumulator_bits)
        acc = [[Signal(acc_shape, name=f"acc_{r}_{c}", reset_less=True) for c in range(cols)]
               for r in range(rows)]
        restart = [Signal(name=f"restart_{c}") for c in range(cols)]
        first_p = self.step_valid & self.first
        for k in range(MULTIPLIER_STAGES):
            reg = Signal(name=f"first{k}")
            m.d.sync += reg.eq(first_p)
            first_p = reg
        m.d.sync += [restart[c].eq(first_p) for c in range(cols)]
        # the shadow bank, row-major: a drain beat shifts it by one group of ``lanes`` lanes
        shadow = [[Signal(acc_shape, name=f"shadow_{r}_{c}", reset_less=True)
                   for c in range(cols)] for r in range(rows)]
        flat = [lane for row in shadow for lane in row]
        lanes, groups = cu.lanes_out, cu.row_cycles
        left = Signal(range(rows + 1))      # rows of the shadow bank still to drain
        row = Signal.like(self.drain.p.row)
        settings = Signal(lay.tile, reset_less=True)
        drain_fire = self.drain.valid & self.drain.ready
        for r in range(rows):
            for c in range(cols):
                with m.If(valid_p):
                    m.d.sync += acc[r][c].eq(Mux(restart[c], bias_p[c], acc[r][c])
                                             + prod[r][c])
                # stage 4: a tile's sums into the shadow bank, the cycle after its last step
                k = r * cols + c + lanes
                with m.If(last_a):
                    m.d.sync += shadow[r][c].eq(acc[r][c])
                with m.Elif(drain_fire):
                    m.d.sync += shadow[r][c].eq(flat[k] if k < len(flat) else 0)

        # the group of the row being drained: a row ends with its last group's beat
        row_end = Signal(init=groups == 1)
        if groups > 1:
            group = Signal(range(groups))
            with m.If(last_a | drain_fire):
                m.d.sync += [group.eq(Mux(last_a | row_end, 0, group + 1)),
                             row_end.eq(~last_a & (group == groups - 2))]
        with m.If(last_a):
            m.d.sync += [left.eq(tile_p.rows), row.eq(tile_p.row_base), settings.eq(tile_p)]
        with m.Elif(drain_fire & row_end):
            m.d.sync += [left.eq(left - 1), row.eq(row + 1)]

        # look-ahead of "no row to drain and no last step in flight" for the next cycle: the
        # shadow bank's rows after this cycle, and the last flags shifted in and along
        rows_next = Mux(drain_fire & row_end, left != 1, left != 0)
        m.d.sync += self.last_ok.eq(~((self.step_valid & self.last) | Cat(*lasts).any()
                                      | rows_next))

        # look-ahead of "a row's first beat waits": a new tile's rows; after a drain beat, the
        # next row when this beat ended one; else unchanged (so the drain handshake is one LUT
        # input, not behind the group and row counters' next values)
        m.d.sync += self.drain_row_start.eq(
            Mux(last_a, tile_p.rows != 0,
                Mux(drain_fire, row_end & (left != 1), self.drain_row_start)))

        m.d.comb += [
            self.drain.valid.eq(left != 0),
            self.drain.p.row.eq(row),
            self.drain.p.multiplier.eq(settings.multiplier),
            self.drain.p.shift.eq(settings.shift),
            self.drain.p.wide.eq(settings.wide),
            self.drain.p.gelu.eq(settings.gelu),
            self.drain.p.act_multiplier.eq(settings.act_multiplier),
            self.drain.p.act_shift.eq(settings.act_shift),
            self.drain.p.last.eq(settings.last & (left == 1)),
        ]
        for c in range(lanes):
            m.d.comb += self.drain.p.acc[c].eq(shadow[0][c])
        return m
