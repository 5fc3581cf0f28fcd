"""The expert's hidden activations: GEMM1's output rows (int8 after the fused GELU and the
activation requant) written into the hidden-activation buffer, a second
:class:`hw.gather.Gather` memory that feeds GEMM2's ``act``."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw import token_tiles
from hw.compute_unit_layouts import Layouts
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
    cycle it is valid; ``done`` pulses with the final row (``last``).

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
        count = Signal.like(self.m)
        # the end of the token tile after the current one (its first row + 2 rows) and the
        # current tile's last row are registers, so the tile advance has no adder before the
        # compare
        next_end = Signal(range((1 << len(self.m)) + 2 * rows))
        tile_last_row = Signal.like(self.m)        # min(count, tile end) - 1
        col = Signal(range(tiles))
        last_col = Signal(init=tiles == 1)         # col == tiles - 1, registered
        y = self.y.p
        take = self.y.valid & self.y.ready
        m.submodules.output = output = RegisterSlice(GatherLayouts(self.cfg).write)
        wiring.connect(m, output.o, wiring.flipped(self.write))
        m.d.comb += [self.y.ready.eq(output.i.ready), output.i.valid.eq(self.y.valid),
                     output.i.p.addr.eq(y.row * tiles + col), self.done.eq(take & y.last)]
        for c in range(cu.cols):
            m.d.comb += output.i.p.data[c].eq(y.data[c][:ops])
        with m.If(take & (y.row == tile_last_row)):
            with m.If(last_col):
                m.d.sync += [col.eq(0), last_col.eq(tiles == 1), next_end.eq(next_end + rows),
                             tile_last_row.eq(token_tiles.last_row(count, next_end))]
            with m.Else():
                m.d.sync += [col.eq(col + 1), last_col.eq(col == tiles - 2)]
        with m.If(self.start):
            m.d.sync += [count.eq(self.m), next_end.eq(2 * rows), col.eq(0),
                         last_col.eq(tiles == 1),
                         tile_last_row.eq(token_tiles.last_row(self.m, rows))]
        return m
