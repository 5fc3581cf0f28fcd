"""Router logits from the compute unit's rows to the router's one-logit-per-beat input."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts, out_bits
from hw.router import logit_layout
from hw.skid_buffer import SkidBuffer
from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError


class LogitSerialiser(wiring.Component):
    """Takes one output row of the router GEMM (``cols`` lanes, the first ``R =
    router_outputs`` valid: the whole GEMM is one output tile) and emits lanes ``0..R-1`` as
    logits, ``last`` on lane ``R-1``. A row is taken when the previous one's last logit leaves,
    so rows flow at one per ``R`` cycles. Logits are the unit's wide outputs (saturated to
    :func:`hw.compute_unit_layouts.out_bits`, which must equal ``softmax.input_bits``).

    Rows enter through a zero-latency :class:`hw.skid_buffer.SkidBuffer`, so ``i.ready`` is a
    flip-flop: the router's ``ready`` and the lane counter never reach the compute unit's output
    stage. The row register loads in the same cycles as without the skid; the ``i`` handshake may
    come one row earlier (the producer runs one row ahead into the skid). The row register loads
    the skid's payload whenever the serialiser may take a row (empty, or its last logit leaving),
    whether or not one is offered (``full`` says whether it holds one), and shifts when another
    logit leaves: its enable is one gate of ``full`` and the router's ``ready``, its load-or-shift
    choice a gate of two flip-flops, free of the unit's ``valid`` and the engine's steering.

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
        m.submodules.skid = skid = SkidBuffer(self.i.p.shape())
        wiring.connect(m, wiring.flipped(self.i), skid.i)
        full = Signal()
        row = Signal.like(self.i.p.data, reset_less=True)  # lane 0 is the logit being offered
        lane = Signal(range(r))
        last = Signal()                                  # lane == r - 1, registered
        may_take = Signal()                              # empty, or the last logit leaving
        m.d.comb += [may_take.eq(~full | (self.o.ready & last)), skid.o.ready.eq(may_take),
                     self.idle.eq(~full), self.o.valid.eq(full), self.o.p.logit.eq(row[0]),
                     self.o.p.last.eq(last)]
        # a shift register, not a lane mux: each logit that leaves shifts the next into lane 0.
        # Its enable (empty, or a logit leaving) is the one gate the router's ``ready`` drives;
        # load-or-shift is chosen by flip-flops (empty, or on the last lane: load)
        with m.If(~full | self.o.ready):
            m.d.sync += row.eq(Mux(~full | last, skid.o.p.data,
                                   row.as_value() >> self.i.p.data.shape().elem_shape.width))
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [lane.eq(lane + 1), last.eq(lane == r - 2)]
            with m.If(last):
                m.d.sync += [lane.eq(0), full.eq(0)]
        with m.If(skid.o.valid & may_take):
            m.d.sync += [full.eq(1), last.eq(r == 1)]
        return m
