"""The router (expert gating): router logits in -> per-expert token queues out.

Exactly :func:`golden.router.route`, built from the softmax unit (:class:`hw.softmax.Softmax`),
a streaming top-k (:class:`hw.topk.TopK`) and the queue memory
(:class:`hw.expert_queues.ExpertQueues`)::

    softmax_topk:  i ──> Softmax (R) ──prob──> SkidBuffer ──> RegisterSlice ──> TopK ──(expert, gate)──> ExpertQueues ──> o
    topk_softmax:  i ──> TopK ──logit──> Softmax (k) ──prob──┐
                          └──expert──> id FIFO ──────────────┴──(expert, gate)──> ExpertQueues ──> o

``R = experts + null_experts`` logits per token, ``k = top_k`` slots per token.
"""

from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In

from golden.softmax import Formats
from hw.expert_queues import ExpertQueues, readout_members
from hw.softmax import Softmax, input_layout
from hw.register_slice import RegisterSlice
from hw.skid_buffer import SkidBuffer
from hw.topk import TopK, value_layout
from moeaccel.config import DesignConfig
from sim.timing import softmax as softmax_timing


def logit_layout(cfg: DesignConfig):
    """Input beat: one router logit (softmax input format) and ``last`` (the token's final one)."""
    return input_layout(cfg.hardware.softmax)


class Router(wiring.Component):
    """Routes the tokens of a layer to per-expert queues (see the module docstring).

    Number formats: logits signed ``softmax.input_bits`` with ``input_frac_bits`` fraction bits;
    gates unsigned ``prob_frac_bits`` fraction bits (``<= 1.0``). Routed experts are outputs
    ``0 .. experts-1``, null experts ``experts .. R-1`` (counted, never queued).

    Members
    -------
    i : In(stream.Signature(logit_layout(cfg)))
        ``R`` logits per token, in router-output order, one per beat, ``last`` on the ``R``-th.
        Tokens are numbered from 0 in arrival order within a layer (at most ``model.tokens``).
    flush : In(stream.Signature(flush_layout()))
        Ends the layer. Accepted once every token that entered has been queued and no read-out
        is running; then ``status`` is latched and the queues are read out on ``o`` (or just
        emptied, if ``discard``).
    o : Out(stream.Signature(entry_layout(cfg)))
        After a flush: for each non-empty expert in expert order its ``(token, gate)`` entries in
        token order, each beat carrying the expert and its queue length; ``last`` ends an
        expert's queue, ``end`` the layer. Nothing is sent for a layer with no entries.
    status : Out(status_layout(cfg))
        ``tokens``, ``dropped`` (slots over ``expert_capacity``) and ``null_slots`` of the last
        flushed layer.
    busy : Out(1)
        A read-out is in progress (tokens of the next layer are accepted meanwhile, and wait).

    Timing (``sim.timing.router``): one logit per cycle in (``softmax_topk``: one per
    ``hardware.softmax.accumulate_interval`` cycles, 2 on ulx3s); the queue writes of token
    ``t`` follow :func:`sim.timing.router.write_cycles`; e.g. ``latency`` = 65 cycles and one
    token per 16 cycles for m3vit-tiny. Read-out: :func:`sim.timing.router.readout_cycles`.
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        super().__init__({"i": In(stream.Signature(logit_layout(cfg))), **readout_members(cfg)})

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, model = self.cfg, self.cfg.model
        sm = cfg.hardware.softmax
        r, k = model.router_outputs, model.top_k
        m.submodules.softmax = softmax = Softmax(cfg)
        m.submodules.queues = queues = ExpertQueues(cfg)
        slot = queues.i

        if model.gating == "softmax_topk":
            m.submodules.topk = topk = TopK(r, k, unsigned(Formats(sm).prob_bits))
            wiring.connect(m, wiring.flipped(self.i), softmax.i)
            # the probabilities reach the top-k compares from flip-flops (not from the
            # softmax's LUT-RAM output queue): ``sim.timing.router.TOPK_INPUT_DELAY`` cycle; a
            # skid buffer in front of that register makes the softmax's ``o.ready`` a
            # flip-flop, so the top-k's ready (its row-end count) reaches neither the
            # softmax's credit counter nor anything upstream (no cycle: zero latency)
            m.submodules.probs_skid = skid = SkidBuffer(value_layout(topk.value_shape))
            m.submodules.probs = probs = RegisterSlice(value_layout(topk.value_shape))
            m.d.comb += [
                skid.i.valid.eq(softmax.o.valid),
                skid.i.payload.value.eq(softmax.o.payload.prob),
                softmax.o.ready.eq(skid.i.ready),
            ]
            wiring.connect(m, skid.o, probs.i)
            wiring.connect(m, probs.o, topk.i)
            m.d.comb += [
                slot.valid.eq(topk.o.valid),
                slot.payload.expert.eq(topk.o.payload.index),
                slot.payload.gate.eq(topk.o.payload.value),
                slot.payload.last.eq(topk.o.payload.last),
                topk.o.ready.eq(slot.ready),
            ]
        else:
            m.submodules.topk = topk = TopK(r, k, signed(sm.input_bits))
            # ids wait here while their logits are in the softmax (at most the rows it holds)
            depth = (softmax_timing.ROW_CREDITS + 3) * k
            m.submodules.ids = ids = SyncFIFO(width=len(topk.o.payload.index), depth=depth)
            m.d.comb += [
                topk.i.valid.eq(self.i.valid),
                topk.i.payload.value.eq(self.i.payload.logit),
                self.i.ready.eq(topk.i.ready),
                # fork: the chosen logit to the softmax, its id to the FIFO, both or neither
                softmax.i.valid.eq(topk.o.valid & ids.w_rdy),
                softmax.i.payload.logit.eq(topk.o.payload.value),
                softmax.i.payload.last.eq(topk.o.payload.last),
                ids.w_data.eq(topk.o.payload.index),
                ids.w_en.eq(topk.o.valid & softmax.i.ready),
                topk.o.ready.eq(softmax.i.ready & ids.w_rdy),
                # join: each probability with the oldest id
                slot.valid.eq(softmax.o.valid & ids.r_rdy),
                slot.payload.expert.eq(ids.r_data),
                slot.payload.gate.eq(softmax.o.payload.prob),
                slot.payload.last.eq(softmax.o.payload.last),
                softmax.o.ready.eq(slot.ready & ids.r_rdy),
                ids.r_en.eq(softmax.o.valid & slot.ready),
            ]

        # tokens inside the pipeline: a flush waits until the layer's last token is queued
        in_flight = Signal(range(model.tokens + 2))
        mid_token = Signal()
        token_in = self.i.valid & self.i.ready & self.i.payload.last
        token_out = slot.valid & slot.ready & slot.payload.last
        with m.If(token_in & ~token_out):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(token_out & ~token_in):
            m.d.sync += in_flight.eq(in_flight - 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += mid_token.eq(~self.i.payload.last)
        drained = (in_flight == 0) & ~mid_token
        m.d.comb += [
            queues.flush.valid.eq(self.flush.valid & drained),
            queues.flush.payload.eq(self.flush.payload),
            self.flush.ready.eq(queues.flush.ready & drained),
        ]

        wiring.connect(m, queues.o, wiring.flipped(self.o))
        m.d.comb += [self.status.eq(queues.status), self.busy.eq(queues.busy)]
        return m
