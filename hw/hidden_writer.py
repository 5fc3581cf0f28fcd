"""The expert's hidden activations: GEMM1's output rows (int8 after the fused GELU and the
activation requant) written into the hidden-activation buffer, a second
:class:`hw.gather.Gather` memory that feeds GEMM2's ``act``."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw import token_tiles
from hw.compute_unit_layouts import Layouts
from hw.constant_product import times_constant
from hw.gather import GatherLayouts, write_lanes
from hw.register_slice import RegisterSlice
from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError


class HiddenWriter(wiring.Component):
    """Writes the ``m x H`` GEMM1 output (``H = model.expert_hidden``) row-major into a gather
    memory: the row of queue index ``q`` (``y.row``) and output tile ``j`` is word ``q *
    H/cols + j`` (one ``cols``-lane word, :func:`hw.gather.write_lanes` must equal ``cols``). The
    output tile is tracked as the compute unit emits (token tiles outer, output tiles inner).
    ``start`` (pulse, with ``m``) arms it before the GEMM's first row (the MoE controller pulses
    it the cycle after it decides the GEMM, with ``m`` from a register); every row is taken the
    cycle it is valid; ``done`` pulses with the final row (``last``). Its rows must come as the
    unit emits them: each token tile's rows in order, once per output tile; the pass's end is
    known from a count of rows, not from ``y.row`` (which only addresses the word).

    Timing: ``write`` leaves a :class:`hw.register_slice.RegisterSlice`, one cycle after its row
    is taken (the unit's output logic does not reach the memory's 32 write ports in the same
    cycle); ``done`` pulses with the take, so the last word lands the cycle after ``done``, long
    before GEMM2's first read (the controller's next command is at least two cycles later).

    Members: ``start`` In(1), ``m`` In, ``y`` In(stream of ``Layouts.out``), ``write``
    Out(stream of ``GatherLayouts.write``), ``done`` Out(1).
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        cu, h = cfg.hardware.compute_unit, cfg.model.expert_hidden
        if write_lanes(cfg) != cu.cols or h % cu.cols:
            raise ConfigError("hardware.dram.bytes_per_cycle",
                              f"the MoE engine's hidden buffer needs gather write lanes "
                              f"({write_lanes(cfg)}) equal to compute_unit.cols ({cu.cols}) and "
                              f"model.expert_hidden ({h}) a multiple of cols")
        lay = Layouts(cfg)
        super().__init__({"start": In(1), "m": In(lay.command["m"].shape),
                          "y": In(stream.Signature(lay.out)),
                          "write": Out(stream.Signature(GatherLayouts(cfg).write)),
                          "done": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        rows, ops, tiles = cu.rows, cu.operand_bits, self.cfg.model.expert_hidden // cu.cols
        # every register is (re)loaded by ``start`` before the GEMM's first row: reset-less
        count = Signal.like(self.m, reset_less=True)
        # The rows still to come in the current pass (token tile x output tile) are counted
        # down, with ``at_last`` (the row arriving next ends the pass) a register: the unit
        # emits a tile's rows in order, so no compare of ``y.row`` follows the handshake. The
        # row counts of the current and of the next token tile are registers too; the next
        # one is recomputed from ``next_start`` the cycle after a tile advance, long before the
        # next advance (a tile of two rows or more takes two cycles or more; a one-row tile
        # other than the last exists only when ``rows`` is 1, where every count is 1).
        width = range(rows + 1)
        left, tile_rows, next_rows = (Signal(width, reset_less=True) for _ in range(3))
        # left / tile_rows / next_rows == 1
        at_last, tile_one, next_one = (Signal(reset_less=True) for _ in range(3))
        next_start = Signal(range((1 << len(self.m)) + rows), reset_less=True)  # next tile's row
        col = Signal(range(tiles), reset_less=True)
        last_col = Signal(init=tiles == 1, reset_less=True)   # col == tiles - 1, registered

        def tile_size(first_row):                  # rows of the token tile starting at first_row
            return token_tiles.last_row(count, first_row + rows) + 1 - first_row

        m.d.sync += [next_rows.eq(tile_size(next_start)), next_one.eq(tile_size(next_start) == 1)]
        y = self.y.p
        take = self.y.valid & self.y.ready
        m.submodules.output = output = RegisterSlice(GatherLayouts(self.cfg).write)
        wiring.connect(m, output.o, wiring.flipped(self.write))
        m.d.comb += [self.y.ready.eq(output.i.ready), output.i.valid.eq(self.y.valid),
                     output.i.p.addr.eq(times_constant(y.row, tiles) + col),
                     self.done.eq(take & y.last)]
        for c in range(cu.cols):
            m.d.comb += output.i.p.data[c].eq(y.data[c][:ops])
        if rows == 1:                               # every pass is one row
            m.d.comb += at_last.eq(1)
        with m.If(take):
            with m.If(at_last):
                with m.If(last_col):
                    m.d.sync += [col.eq(0), last_col.eq(tiles == 1),
                                 next_start.eq(next_start + rows), tile_rows.eq(next_rows),
                                 tile_one.eq(next_one), left.eq(next_rows)]
                    if rows > 1:
                        m.d.sync += at_last.eq(next_one)
                with m.Else():
                    m.d.sync += [col.eq(col + 1), last_col.eq(col == tiles - 2),
                                 left.eq(tile_rows)]
                    if rows > 1:
                        m.d.sync += at_last.eq(tile_one)
            if rows > 1:
                with m.Else():
                    m.d.sync += [left.eq(left - 1), at_last.eq(left == 2)]
        with m.If(self.start):
            first = token_tiles.last_row(self.m, rows) + 1
            m.d.sync += [count.eq(self.m), next_start.eq(rows), col.eq(0),
                         last_col.eq(tiles == 1), tile_rows.eq(first), left.eq(first),
                         tile_one.eq(first == 1)]
            if rows > 1:
                m.d.sync += at_last.eq(first == 1)
        return m
