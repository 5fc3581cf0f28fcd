"""Router logits from the compute unit's rows to the router's one-logit-per-beat input."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts, out_bits
from hw.router import logit_layout
from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError


class LogitSerialiser(wiring.Component):
    """Takes one output row of the router GEMM (``cols`` lanes, the first ``R =
    router_outputs`` valid: the whole GEMM is one output tile) and emits lanes ``0..R-1`` as
    logits, ``last`` on lane ``R-1``. A row is taken when the previous one's last logit leaves,
    so rows flow at one per ``R`` cycles. Logits are the unit's wide outputs (saturated to
    :func:`hw.compute_unit_layouts.out_bits`, which must equal ``softmax.input_bits``).

    Members: ``i`` In(stream of ``Layouts.out``), ``o`` Out(stream of
    :func:`hw.router.logit_layout`), ``idle`` Out(1) (no row held).
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        r, cols = cfg.model.router_outputs, cfg.hardware.compute_unit.cols
        if r > cols or out_bits(cfg) != cfg.hardware.softmax.input_bits:
            raise ConfigError("model.experts", f"the MoE engine's router GEMM must be one output "
                              f"tile (router outputs {r} <= compute_unit.cols {cols}) of the "
                              f"softmax input width ({cfg.hardware.softmax.input_bits} bits = "
                              f"the unit's wide output, {out_bits(cfg)} bits)")
        super().__init__({"i": In(stream.Signature(Layouts(cfg).out)),
                          "o": Out(stream.Signature(logit_layout(cfg))),
                          "idle": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        r = self.cfg.model.router_outputs
        full = Signal()
        row = Signal.like(self.i.p.data)                 # lane 0 is the logit being offered
        lane = Signal(range(r))
        last = Signal()                                  # lane == r - 1, registered
        m.d.comb += [self.i.ready.eq(~full | (self.o.ready & last)), self.idle.eq(~full),
                     self.o.valid.eq(full), self.o.p.logit.eq(row[0]),
                     self.o.p.last.eq(last)]
        # a shift register, not a lane mux: each logit that leaves shifts the next into lane 0
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [lane.eq(lane + 1), last.eq(lane == r - 2),
                         row.eq(row.as_value() >> self.i.p.data.shape().elem_shape.width)]
            with m.If(last):
                m.d.sync += [lane.eq(0), full.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [full.eq(1), row.eq(self.i.p.data), last.eq(r == 1)]
        return m
