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
    ``start`` (pulse, with ``m``) arms it; every row is taken the cycle it is valid; ``done``
    pulses with the final row (``last``).

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
        tile_row = Signal.like(self.m)
        tile_last_row = Signal.like(self.m)        # min(count, tile_row + rows) - 1, registered
        col = Signal(range(tiles))
        y = self.y.p
        take = self.y.valid & self.y.ready
        m.submodules.output = output = RegisterSlice(GatherLayouts(self.cfg).write)
        wiring.connect(m, output.o, wiring.flipped(self.write))
        m.d.comb += [self.y.ready.eq(output.i.ready), output.i.valid.eq(self.y.valid),
                     output.i.p.addr.eq(y.row * tiles + col), self.done.eq(take & y.last)]
        for c in range(cu.cols):
            m.d.comb += output.i.p.data[c].eq(y.data[c][:ops])
        with m.If(take & (y.row == tile_last_row)):
            with m.If(col == tiles - 1):
                m.d.sync += [col.eq(0), tile_row.eq(tile_row + rows),
                             tile_last_row.eq(token_tiles.last_row(count, tile_row + 2 * rows))]
            with m.Else():
                m.d.sync += col.eq(col + 1)
        with m.If(self.start):
            m.d.sync += [count.eq(self.m), tile_row.eq(0), col.eq(0),
                         tile_last_row.eq(token_tiles.last_row(self.m, rows))]
        return m
