"""The MoE layer engine: one whole MoE layer (:func:`golden.moe.moe_layer`, bit-exact) on the
shared compute unit, expert by expert, weights streamed from DRAM with ping/pong prefetch.

Blocks (each its own module) and the data paths between them::

    x ──> Gather (gather_x) ──act──┐                      ┌─> LogitSerialiser ─> Router ─> QueueStore
    HiddenWriter ─> Gather (h) ─act┴─> ComputeUnit ─out───┼─> HiddenWriter (GEMM1 rows, int8)
    DRAM ─> WeightBuffer (fetch ─> ping/pong ─> stream) ─┘ └─> ScatterAccumulate ──result──> out
    QueueStore ──tokens──> gather_x / gather_h token ids;  ──routes──> scatter (token, gate)

The controller (:class:`hw.moe_controller.MoeController`) sequences a layer after a ``start``
beat ``{task, clear}``; ``x [tokens, embed_dim]`` must already be in gather_x's memory
(``x`` port, element ``t*D + d``). Weights come from the DRAM image of
:func:`moeaccel.weight_image.weight_image` (layout and header format there).

Schedule (what the simulator must match)
----------------------------------------
Matrices are numbered in processing order: ``0`` = the task's gate matrix (``D x R``), then for
each expert ``x`` of the layer (shared experts ``0..S-1`` first, then the non-empty routed
experts in expert order, as ``golden.moe`` / ``MoeResult.order``) matrix ``2x+1`` = its W1 (``D x
H``) and ``2x+2`` = its W2 (``H x D``). Matrix ``i`` lives in weight slot ``i % 2``.

* **Fetch** (one DRAM request per matrix, one at a time, in matrix order): matrix ``i`` is
  requested as soon as (a) it is known (the gate and the shared experts' matrices from the
  start; routed experts' once the router's read-out has been stored), (b) the previous fetch is
  complete, and (c) its slot is free: matrix ``i-2``'s weights have all been streamed into the
  compute unit (its last weight beat). So the fetch of matrix ``i+1`` overlaps GEMM ``i``.
* **Compute** (strictly one GEMM at a time, each waiting for its matrix to be on chip):
  GEMM 0 = router logits ``[T, D] x [D, R]`` (``wide``) from gather_x with ids ``0..T-1``; its rows
  are serialised into the router. Then the router is flushed and its read-out stored
  (QueueStore). For each expert: GEMM1 ``[count, D] x [D, H]`` with the fused GELU + act
  requant, from gather_x with the expert's token ids (``0..T-1`` for a shared expert), rows
  written to the hidden buffer; then GEMM2 ``[count, H] x [H, D]`` from the hidden buffer (ids
  ``0..count-1``) scatter-accumulated with the expert's gates (1.0 for shared). A GEMM's
  commands are issued the cycle after its matrix is on chip (``fetched``) and the previous
  GEMM is complete: its last output row consumed (router GEMM: its last logit taken by the
  router; GEMM1: last hidden row written; GEMM2: last row taken by the scatter block). After the
  last expert (or after the routing if there is none) the scatter block reads ``T`` tokens out
  on ``out``.
* An expert GEMM (``m`` = the expert's token count) takes exactly
  ``sim.timing.queue_store.gathered_gemm_cycles(cfg, m, k, n)`` (=
  ``sim.timing.gather.gathered_gemm_cycles(cfg, m, k, n) + queue_store.READ_STAGES``) cycles from
  its command to its completion (the token ids come from the queue store's read stage, one
  cycle later than the gather front end could take them), measured as ``ffn_cycles`` by
  ``tests/hw/test_moe_engine.py``; between two GEMMs the controller spends at least one cycle
  checking the next matrix is on chip (``WAIT_WEIGHTS``).
* Empty routed experts cost nothing (not in the list); tokens over capacity are dropped by the
  router (counted in ``status.dropped``).

Counters (``status``, valid when ``busy`` falls; cleared by ``start``)
-----------------------------------------------------------------------
``cycles``: from the cycle after the ``start`` handshake to the last ``out`` beat inclusive;
``mac_steps``: array steps (act handshakes) in the layer; ``ffn_cycles``/``ffn_steps``: cycles
spent in expert GEMMs once their weights are on chip (from the cycle after ``fetched`` reached
the matrix to the GEMM's completion) and the array steps in them, so MAC utilisation during the
FFNs = ``ffn_steps / ffn_cycles``; ``weight_wait``: cycles a GEMM (router included) waited for
its matrix; ``dram_busy``: cycles a fetch was in progress (command to last word written);
``fetches``; ``experts`` run; ``dropped`` and ``null_slots`` from the router. The prefetch hides
``1 - weight_wait / dram_busy`` of the fetch time.

``start.clear``: only read the output accumulators out and discard them (the scatter block's
memory survives a reset; after a reset in the middle of a layer run one clear first).
"""

from __future__ import annotations

from amaranth import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.compute_unit import ComputeUnit
from hw.gather import Gather, GatherLayouts, memory_elements
from hw.hidden_writer import HiddenWriter
from hw.logit_serialiser import LogitSerialiser
from hw.moe_controller import MoeController, start_layout, status_layout
from hw.queue_store import QueueStore
from hw.router import Router
from hw.skid_buffer import SkidBuffer
from hw.scatter import ScatterAccumulate, ScatterLayouts, memory_words
from hw.weight_buffer import WeightBuffer
from hw.weight_fetch import DramLayouts
from moeaccel.weight_image import buffer_slots, check_formats
from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError


def check(cfg: DesignConfig) -> None:
    """``ConfigError`` unless the layer fits the engine's on-chip memories: ``x [T, D]`` and the
    hidden rows ``[T, H]`` in a gather memory (``buffers.activation_bytes``), ``out_acc`` in the
    scatter memory (``buffers.output_bytes``), one weight block (``buffers.weight_bytes``);
    the blocks check their own constraints (router GEMM one output tile, DRAM port width)."""
    check_formats(cfg)
    m, cols = cfg.model, cfg.hardware.compute_unit.cols
    need = m.tokens * max(m.embed_dim, m.expert_hidden)
    if need > memory_elements(cfg):
        raise ConfigError("hardware.buffers.activation_bytes",
                          f"the MoE engine's gather memories hold {memory_elements(cfg)} "
                          f"activations, the layer needs {need} (tokens x max(embed_dim, "
                          f"expert_hidden))")
    words = m.tokens * -(-m.embed_dim // cols)
    if words > memory_words(cfg):
        raise ConfigError("hardware.buffers.output_bytes",
                          f"the scatter memory holds {memory_words(cfg)} words, the layer "
                          f"needs {words}")
    buffer_slots(cfg)


class MoeEngine(wiring.Component):
    """One MoE layer per ``start`` (see the module docstring for the schedule and counters).

    Members
    -------
    x : In(stream of ``GatherLayouts.write``), the layer input into gather_x's memory
    start : In(stream of :func:`hw.moe_controller.start_layout`), accepted when idle
    dram_req : Out(stream of ``DramLayouts.request``), dram_data : In(stream of ``.response``)
    out : Out(stream of ``ScatterLayouts.result``), the layer output, tokens ``0..T-1``
    status : Out(:func:`hw.moe_controller.status_layout`)
    busy : Out(1)
    """

    def __init__(self, cfg: DesignConfig):
        check(cfg)
        self.cfg = cfg
        dram = DramLayouts(cfg)
        self.unit, self.gather_x, self.gather_h = ComputeUnit(cfg), Gather(cfg), Gather(cfg)
        self.weights, self.queues = WeightBuffer(cfg), QueueStore(cfg)
        self.serialiser, self.hidden = LogitSerialiser(cfg), HiddenWriter(cfg)
        self.scatter, self.router = ScatterAccumulate(cfg), Router(cfg)
        super().__init__({
            "x": In(stream.Signature(GatherLayouts(cfg).write)),
            "start": In(stream.Signature(start_layout(cfg))),
            "dram_req": Out(stream.Signature(dram.request)),
            "dram_data": In(stream.Signature(dram.response)),
            "out": Out(stream.Signature(ScatterLayouts(cfg).result)),
            "status": Out(status_layout(cfg)),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        for name in ("unit", "gather_x", "gather_h", "weights", "queues", "serialiser",
                     "hidden", "scatter", "router"):
            m.submodules[name] = getattr(self, name)
        m.submodules.controller = ctrl = MoeController(self.cfg, self)
        unit, gx, gh = self.unit, self.gather_x, self.gather_h
        q, w = self.queues, self.weights

        wiring.connect(m, wiring.flipped(self.x), gx.write)
        wiring.connect(m, wiring.flipped(self.dram_req), w.dram_req)
        wiring.connect(m, wiring.flipped(self.dram_data), w.dram_data)
        # the unit's operand inputs through skid buffers: its step logic (a join of act, weight
        # and bias) reaches the producers' registers only through a flip-flop
        skids = {name: SkidBuffer(getattr(unit, name).p.shape()) for name in ("act", "weight", "bias")}
        for name, skid in skids.items():
            m.submodules[f"{name}_skid"] = skid
            wiring.connect(m, skid.o, getattr(unit, name))
        wiring.connect(m, w.bias, skids["bias"].i)
        wiring.connect(m, w.weight, skids["weight"].i)
        wiring.connect(m, self.serialiser.o, self.router.i)
        wiring.connect(m, self.router.o, q.i)
        wiring.connect(m, self.hidden.write, gh.write)

        # act and token ids: gather_x (router GEMM, GEMM1) or gather_h (GEMM2). Only the gather
        # with a command offers act beats (``act.valid``) or takes ids (``token.ready``, high only
        # while ids of its command are left), and the controller commands one gather per GEMM
        # and the next GEMM only after the unit's last row: so the handshakes are ORs and
        # broadcasts, free of the controller's steering flip-flop; only the payload multiplexer
        # is steered (by ``use_x``, the controller's copy of ``~use_hidden`` for its many loads).
        m.d.comb += [
            skids["act"].i.valid.eq(gx.act.valid | gh.act.valid),
            skids["act"].i.p.eq(Mux(ctrl.use_x, gx.act.p, gh.act.p)),
            gx.act.ready.eq(skids["act"].i.ready), gh.act.ready.eq(skids["act"].i.ready),
            gx.token.valid.eq(q.tokens.valid), gh.token.valid.eq(q.tokens.valid),
            gx.token.p.eq(q.tokens.p.token), gh.token.p.eq(q.tokens.p.token),
            q.tokens.ready.eq(gx.token.ready | gh.token.ready),
            # routes for the scatter block
            self.scatter.route.valid.eq(q.routes.valid),
            self.scatter.route.p.token.eq(q.routes.p.token),
            self.scatter.route.p.gate.eq(q.routes.p.gate),
            q.routes.ready.eq(self.scatter.route.ready),
        ]
        # the unit's output rows: serialiser (router GEMM), hidden writer (GEMM1), scatter (GEMM2)
        sinks = (self.serialiser.i, self.hidden.y, self.scatter.y)
        for index, sink in enumerate(sinks):
            m.d.comb += [sink.valid.eq(unit.out.valid & (ctrl.dest == index)),
                         sink.p.eq(unit.out.p)]
            with m.If(ctrl.dest == index):
                m.d.comb += unit.out.ready.eq(sink.ready)
        return m
