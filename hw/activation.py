"""The compute unit's fused activation: optional GELU on a requantised output row, then the
activation requantiser back to the operand format (the ``g -> a`` step of
:func:`golden.moe.expert_ffn`)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts
from hw.gelu import Gelu
from hw.requantise import Requantiser
from moeaccel.config import DesignConfig


def gelu_config(cfg: DesignConfig) -> DesignConfig:
    """``cfg`` with one GELU lane per output-pipeline lane (``compute_unit.lanes_out``), so one
    beat of the unit's output pipeline is one GELU beat."""
    return cfg.replace({"hardware.gelu.lanes": cfg.hardware.compute_unit.lanes_out})


class FusedActivation(wiring.Component):
    """Rows whose ``gelu`` flag is set leave as ``requantise(GELU(y), act_multiplier, act_shift,
    operand_bits)`` (:func:`golden.gelu.gelu`, :func:`golden.fixed.requantise`); other rows
    leave unchanged. Every row takes the same path, so rows of consecutive GEMMs stay in order.

    Input rows of a GELU GEMM are in GELU's input format (the unit's wide output, signed
    ``gelu.input_bits`` with ``input_frac_bits``). A beat is one group of
    ``compute_unit.lanes_out`` lanes of a row (the whole row unless ``output_lanes`` is set);
    GELU runs on that many lanes (one table, one small multiplier per lane). Rows without ``gelu``
    take GELU's ``bypass`` (their values take ReLU's place in GELU's sum), and the second
    :class:`hw.requantise.Requantiser` (multiplier 1, shift 0 for bypassed rows, which already
    fit) produces the output. Its settings are chosen before GELU and ride along as GELU's tag,
    so its hard multipliers are fed straight from registers.

    Timing: ``sim.timing.gelu.PIPELINE_STAGES + sim.timing.compute_unit.REQUANT_STAGES - 1``
    register stages, one beat per cycle, always advancing (no back-pressure: the compute unit
    reserves room for every row in its output buffer before the row enters). The second
    requantiser's output is combinational (``registered_output=False``): the unit's
    :class:`hw.credit_buffer.CreditBuffer` FIFO is its last register.

    Members
    -------
    i : In(stream of ``Layouts.requantised``, always ready)
    o : Out(stream of ``Layouts.out``, always ready; combinational from the last stage)
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.layouts = lay = Layouts(cfg, cfg.hardware.compute_unit.lanes_out)
        ge = cfg.hardware.gelu
        if ge.input_bits < cfg.hardware.compute_unit.operand_bits:
            raise ValueError("the fused GELU needs gelu.input_bits >= operand_bits (its input is "
                             "the unit's wide output format)")
        super().__init__({
            "i": In(stream.Signature(lay.requantised, always_ready=True)),
            "o": Out(stream.Signature(lay.out, always_ready=True)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes, lay = self.cfg.hardware.compute_unit.lanes_out, self.layouts
        # the second requantiser's settings for the row, chosen before GELU
        settings = data.StructLayout({name: lay.drain[name].shape
                                      for name in ("row", "last", "multiplier", "shift", "wide")})
        m.submodules.gelu = gelu = Gelu(gelu_config(self.cfg), tag_bits=settings.size,
                                        bypass=True)
        # it multiplies GELU's outputs (or the bypassed inputs), no wider than GELU's output lanes
        m.submodules.requantiser = requantiser = Requantiser(
            self.cfg, lanes=lanes, registered_output=False,
            acc_bits=gelu.o.p.data.shape().elem_shape.width)
        r = requantiser.i

        # GELU never sees back-pressure: its pipeline enables are constant 1
        row = self.i.p
        tag = Signal(settings)
        m.d.comb += [gelu.i.valid.eq(self.i.valid), gelu.o.ready.eq(1),
                     gelu.i.p.bypass.eq(~row.gelu), gelu.i.p.tag.eq(tag),
                     tag.row.eq(row.row), tag.last.eq(row.last),
                     tag.multiplier.eq(Mux(row.gelu, row.act_multiplier, 1)),
                     tag.shift.eq(Mux(row.gelu, row.act_shift, 0)),
                     tag.wide.eq(~row.gelu)]
        for c in range(lanes):
            m.d.comb += gelu.i.p.data[c].eq(row.data[c])

        done = Signal(settings)
        m.d.comb += [done.eq(gelu.o.p.tag), r.valid.eq(gelu.o.valid),
                     r.p.row.eq(done.row), r.p.last.eq(done.last),
                     r.p.multiplier.eq(done.multiplier), r.p.shift.eq(done.shift),
                     r.p.wide.eq(done.wide)]
        for c in range(lanes):
            m.d.comb += r.p.acc[c].eq(gelu.o.p.data[c])

        m.d.comb += [self.o.valid.eq(requantiser.o.valid),
                     self.o.p.data.eq(requantiser.o.p.data), self.o.p.row.eq(requantiser.o.p.row),
                     self.o.p.last.eq(requantiser.o.p.last)]
        return m
