"""The accelerator's schedule: the ordered steps one inference executes, built from the config.

A :class:`Step` is one command to the compute pipeline (a GEMM on the shared compute unit, with
the softmax, GELU or router unit consuming its output stream when fused) together with the data it
needs from DRAM first and the data it writes back after. :mod:`sim.timeline` plays the steps
against the DRAM channel and the weight buffer; this module only decides what runs, in which
order, for how many cycles.

Per-block cycles come from :mod:`sim.timing` (the functions the RTL tests hold the hardware to);
nothing here restates them. Composition rules (ours, documented here):

* **GELU** is the compute unit's fused activation (``hw/activation.py``: one GELU lane per array
  column, a row per cycle), so an FFN's first GEMM takes ``compute_unit.gemm_cycles``, whose
  pipeline includes the activation stages; GELU's busy cycles are ``gelu.cycles`` with
  ``lanes = cols``.
* **Stream consumers.** When a separate unit consumes the compute unit's output stream (softmax
  after ``Q K^T`` row by row, the router after the gate GEMM token by token), the step takes
  ``max(producer + consumer(one item), consumer(all items))``: the slower of the two sets the
  pace, and the last item, available when the producer finishes, still needs a lone item's
  time in the consumer. (An upper bound by at most the item's input beats.)
* **Scatter-accumulate** takes a row every cycle and never stalls its producer, so a step whose
  rows it accumulates ends when the scatter block can take its next command:
  ``producer - 1 + scatter.next_command_after_rows`` (:func:`scattered`; the RTL rule measured
  by ``tests/hw/test_expert_datapath.py`` and ``moeaccel validate``).
* **Attention** per layer: ``QKV = x Wqkv`` (weights from DRAM), then per head
  ``S = Q K^T`` fused with the softmax (online softmax: the normalisation is folded into the
  next GEMM, so it costs no extra pass), ``O = S V`` (K and V are on chip, no weight fetch), then
  the projection ``O Wo``. LayerNorm and residual adds have no hardware block and are not timed.
* **Dense MLP**: ``GELU(x W1) W2``.
* **MoE layer**: exactly the schedule of the MoE engine (``hw/moe_engine.py``, the RTL is the
  truth; ``moeaccel validate`` compares them cycle for cycle), :meth:`ScheduleBuilder.engine_moe`
  with the composition rules of :mod:`sim.timing.moe_controller`: the router GEMM (the task's
  gate block, fed through the queue store and the gather) whose rows the logit serialiser feeds
  the router (:func:`sim.timing.router.fed_schedule`), complete when the serialiser is idle;
  the flush once the router drained, the read-out (``router.readout_cycles``) stored, and the
  routed experts known the next cycle; then each shared expert over all tokens and each routed
  expert with a non-empty queue, in expert order: GEMM1 (+ fused GELU, rows into the hidden
  buffer) and GEMM2 (read through the hidden buffer's gather, rows scatter-accumulated), each
  ``queue_store.gathered_gemm_cycles`` from its command to its last output row, one wait cycle
  (``GEMM_GAP``) between GEMMs; finally the scatter read-out once its accumulate pipeline has
  drained. Weights: one whole :mod:`moeaccel.weight_image` block per matrix (header, padded bias,
  weights), fetched in matrix order once known, the previous fetch done and its slot free
  (the matrix ``slots`` before it streamed: :func:`sim.buffers.engine_slots`); empty experts
  cost nothing. Where the engine cannot run the layer (:func:`engine_runs` false: a block does
  not fit the weight buffer, or more router outputs than array columns) the previous generic
  composition is kept: the gate GEMM fused with the router (``fused``), column-tiled weights,
  an expert's second GEMM ending when the scatter block can take its next command
  (:func:`scattered`), an extrapolation beyond the RTL.
* Weight tiling and activation spills follow :mod:`sim.buffers`.
"""

from __future__ import annotations

from typing import Iterable

from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError

from . import buffers
from .queues import ExpertQueues
from .timing import (compute_unit, gather, gelu, logit_serialiser, moe_controller, queue_store,
                     router, scatter, softmax, weight_fetch)

#: the blocks whose busy cycles are counted (``dram`` is counted by the timeline)
BLOCKS = ("compute_unit", "softmax", "gelu", "router", "gather", "scatter")
_SOFTMAX, _GELU, _ROUTER, _GATHER, _SCATTER = 1, 2, 3, 4, 5


class Step:
    """One command to the compute pipeline and the DRAM traffic around it."""

    __slots__ = ("label", "cycles", "weight_bytes", "act_read_bytes", "act_write_bytes", "after",
                 "busy", "macs", "sram_read_bytes", "sram_write_bytes", "gap", "slots", "release",
                 "fetch_overhead", "fetch_after")

    def __init__(self, label: str, cycles: int, *, weight_bytes: int = 0, act_read_bytes: int = 0,
                 act_write_bytes: int = 0, after: int = -1, busy: tuple[int, ...] = (0,) * len(BLOCKS),
                 macs: int = 0, sram_read_bytes: int = 0, sram_write_bytes: int = 0):
        self.label = label
        #: cycles the compute pipeline is occupied, no stalls
        self.cycles = cycles
        #: weights fetched into a weight slot before the step can start
        self.weight_bytes = weight_bytes
        #: activations read from DRAM before the step can start
        self.act_read_bytes = act_read_bytes
        #: activations written to DRAM after the step
        self.act_write_bytes = act_write_bytes
        #: index of an earlier step that must finish before this step's DRAM reads are issued
        self.after = after
        #: busy cycles of each block in :data:`BLOCKS`
        self.busy = busy
        self.macs = macs
        self.sram_read_bytes = sram_read_bytes
        self.sram_write_bytes = sram_write_bytes
        # How the step meets the weight buffer (defaults: a dense layer's column chunk; the MoE
        # engine's steps set them from sim.timing.moe_controller / weight_fetch):
        #: cycles between the previous step's end and this step's earliest start
        self.gap = 0
        #: weight slots of the buffer it uses (None: 2 if double_buffered else 1)
        self.slots: int | None = None
        #: cycles from its start until its weight slot may be refilled (None: its end)
        self.release: int | None = None
        #: cycles its weight fetch adds to the DRAM request (the fetcher's command and done
        #: cycles) before the channel takes the next request
        self.fetch_overhead = 0
        #: cycles from the fetch being done to the earliest start of the step
        self.fetch_after = 0

    def __repr__(self) -> str:
        return (f"Step({self.label!r}, cycles={self.cycles}, weights={self.weight_bytes}, "
                f"read={self.act_read_bytes}, write={self.act_write_bytes}, after={self.after})")


class BlockTiming:
    """The :mod:`sim.timing` functions for one config, memoised (a model repeats shapes: the
    same attention GEMMs every layer, the same softmax rows every head)."""

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self._memo: dict[tuple, int] = {}
        # The compute unit's fused activation runs GELU on one lane per array column
        # (hw/activation.py), so an output row is one GELU beat.
        self._fused_gelu_cfg: DesignConfig | None = None

    def _call(self, fn, *args: int) -> int:
        key = (fn, *args)
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = fn(self.cfg, *args)
        return value

    def gemm(self, m: int, k: int, n: int) -> int:
        return self._call(compute_unit.gemm_cycles, m, k, n)

    def gathered_gemm(self, m: int, k: int, n: int) -> int:
        try:
            return self._call(gather.gathered_gemm_cycles, m, k, n)
        except ValueError as exc:  # the gather front end cannot keep up: no closed form
            raise ConfigError("hardware.compute_unit.rows", str(exc)) from None

    def gather(self, m: int, k: int, n: int) -> int:
        return self._call(gather.cycles, m, k, n)

    def scatter_accumulate(self, rows: int) -> int:
        return self._call(scatter.accumulate_cycles, rows)

    def scatter_readout(self, tokens: int, n: int) -> int:
        return self._call(scatter.readout_cycles, tokens, n)

    def router_readout(self, entries: int) -> int:
        return self._call(router.readout_cycles, entries)

    def fused_gelu(self, n: int) -> int:
        """Busy cycles of the compute unit's fused GELU (``cols`` lanes) over ``n`` elements."""
        if self._fused_gelu_cfg is None:
            cols = self.cfg.hardware.compute_unit.cols
            self._fused_gelu_cfg = self.cfg.replace({"hardware.gelu.lanes": cols})
        key = ("fused_gelu", n)
        if key not in self._memo:
            self._memo[key] = gelu.cycles(self._fused_gelu_cfg, n)
        return self._memo[key]

    def softmax(self, rows: int, length: int) -> int:
        return self._call(softmax.cycles, rows, length)

    def router(self, tokens: int) -> int:
        return self._call(router.cycles, tokens)


def fused(producer: int, consumer_cycles: int, consumer_last_item: int) -> int:
    """Cycles of a producer stream feeding a consumer unit: the consumer's own pace, or the
    producer's last output followed by the consumer's time for one lone item (element, row or
    token), whichever is later."""
    return max(producer + consumer_last_item, consumer_cycles)


def scattered(cfg: DesignConfig, producer: int) -> int:
    """Cycles of a step whose output rows the scatter block accumulates, ``producer`` being the
    producer's cycles through its last row handshake: until the scatter block takes its next
    command (its read-modify-write pipeline drained)."""
    return producer - 1 + scatter.next_command_after_rows(cfg)


class ScheduleBuilder:
    """Appends steps for layers of a model; ``steps`` is the result."""

    def __init__(self, cfg: DesignConfig, timing: BlockTiming | None = None):
        self.cfg = cfg
        self.timing = timing or BlockTiming(cfg)
        self.steps: list[Step] = []
        self._ob = buffers.operand_bytes(cfg)
        self._rows = cfg.hardware.compute_unit.rows
        self._cols = cfg.hardware.compute_unit.cols
        self._residual_spills = buffers.residual_spills(cfg)
        self._residual_bytes = cfg.model.tokens * cfg.model.embed_dim * self._ob
        self._pending_read = 0   # a spilled intermediate the next step reads back from DRAM

    # -- primitives ------------------------------------------------------------------------
    def _add(self, step: Step) -> int:
        step.act_read_bytes += self._pending_read
        step.sram_write_bytes += self._pending_read
        self._pending_read = 0
        self.steps.append(step)
        return len(self.steps) - 1

    def _produce(self, step: Step, nbytes: int) -> None:
        """``step`` leaves an intermediate of ``nbytes`` for the next step: spill it if needed."""
        if buffers.intermediate_spills(self.cfg, nbytes):
            step.act_write_bytes += nbytes
            self._pending_read += nbytes

    def _gemm(self, label: str, m: int, k: int, n: int, *, weight_bytes: int, read_bytes: int,
              after: int, consumer: str | None, gathered: bool = False) -> Step:
        """One compute-unit command ``m x k x n``, its tokens ``gathered`` from an expert queue
        or not, optionally fused with a stream consumer."""
        t, ob = self.timing, self._ob
        busy = [0] * len(BLOCKS)
        if gathered:
            cu = t.gathered_gemm(m, k, n)
            busy[_GATHER] = t.gather(m, k, n)
        else:
            cu = t.gemm(m, k, n)
        busy[0] = cu
        cycles = cu
        if consumer == "gelu":
            # fused inside the compute unit: its timing already includes the activation stages
            busy[_GELU] = t.fused_gelu(m * n)
        elif consumer == "softmax":
            busy[_SOFTMAX] = t.softmax(m, n)
            cycles = fused(cu, busy[_SOFTMAX], t.softmax(1, n))
        elif consumer == "router":
            busy[_ROUTER] = t.router(m)
            cycles = fused(cu, busy[_ROUTER], t.router(1))
        elif consumer == "scatter":
            rows = m * -(-n // self._cols)
            busy[_SCATTER] = t.scatter_accumulate(rows)
            cycles = scattered(self.cfg, cu)
        # Output-stationary: each weight tile is read once per token tile, each activation tile
        # once per output-column tile; results are written once; fetched data is written once.
        token_tiles = -(-m // self._rows)
        col_tiles = -(-n // self._cols)
        sram_read = k * n * ob * token_tiles + m * k * ob * col_tiles
        sram_write = m * n * ob + weight_bytes + read_bytes
        return Step(label, cycles, weight_bytes=weight_bytes, act_read_bytes=read_bytes,
                    after=after, busy=tuple(busy), macs=m * k * n,
                    sram_read_bytes=sram_read, sram_write_bytes=sram_write)

    def linear(self, label: str, m: int, k: int, n: int, *, bias: bool = True,
               consumer: str | None = None, reads_residual: bool = False, after: int = -1,
               gathered: bool = False) -> int:
        """``y = x W (+ b)`` with ``W`` fetched from DRAM, tiled by columns to fit a weight slot.
        Returns the index of the last step."""
        read = m * k * self._ob if (reads_residual and self._residual_spills) else 0
        last = -1
        for i, chunk in enumerate(buffers.column_chunks(self.cfg, k, n, bias)):
            step = self._gemm(f"{label}[{i}]" if chunk != n else label, m, k, chunk,
                              weight_bytes=buffers.weight_matrix_bytes(self.cfg, k, chunk, bias),
                              read_bytes=read, after=after, consumer=consumer, gathered=gathered)
            last = self._add(step)
        self._produce(self.steps[last], m * n * self._ob)
        return last

    def on_chip_gemm(self, label: str, m: int, k: int, n: int, consumer: str | None = None) -> int:
        """A GEMM whose both operands are already on chip (attention scores and context)."""
        step = self._gemm(label, m, k, n, weight_bytes=0, read_bytes=0, after=-1, consumer=consumer)
        index = self._add(step)
        self._produce(step, m * n * self._ob)
        return index

    def block_step(self, label: str, cycles: int, block: int) -> int:
        """A step that occupies one non-GEMM block only (router or scatter read-out)."""
        busy = [0] * len(BLOCKS)
        busy[block] = cycles
        return self._add(Step(label, cycles, busy=tuple(busy)))

    def transfer(self, label: str, read: int = 0, write: int = 0) -> int:
        """A pure DRAM transfer (model input in, model output out)."""
        step = Step(label, 0, act_read_bytes=read, act_write_bytes=write,
                    sram_write_bytes=read, sram_read_bytes=write)
        return self._add(step)

    def end_layer(self) -> None:
        """The layer output becomes the next layer's input: spill it if it does not fit."""
        if self._residual_spills:
            self.steps[-1].act_write_bytes += self._residual_bytes
            self._pending_read = 0  # the next layer's readers fetch it themselves

    # -- layers ------------------------------------------------------------------------------
    def attention(self, layer: int) -> None:
        m = self.cfg.model
        t, d, hd = m.tokens, m.embed_dim, m.head_dim
        self.linear(f"L{layer}.qkv", t, d, 3 * d, reads_residual=True)
        for h in range(m.heads):
            self.on_chip_gemm(f"L{layer}.h{h}.scores", t, hd, t, consumer="softmax")
            self.on_chip_gemm(f"L{layer}.h{h}.context", t, t, hd)
        self.linear(f"L{layer}.proj", t, d, d)

    def mlp(self, layer: int) -> None:
        m = self.cfg.model
        self.linear(f"L{layer}.mlp.w1", m.tokens, m.embed_dim, m.mlp_hidden, consumer="gelu",
                    reads_residual=True)
        self.linear(f"L{layer}.mlp.w2", m.tokens, m.mlp_hidden, m.embed_dim)

    def moe(self, layer: int, queues: ExpertQueues) -> None:
        if engine_runs(self.cfg):
            self.engine_moe(layer, queues)
            return
        m = self.cfg.model
        self.linear(f"L{layer}.router", m.tokens, m.embed_dim, m.router_outputs, bias=False,
                    consumer="router", reads_residual=True)
        entries = int(queues.kept.sum())
        gate = self.block_step(f"L{layer}.router.readout", self.timing.router_readout(entries),
                               _ROUTER)
        for s in range(m.shared_experts):
            self._expert(f"L{layer}.shared{s}", m.tokens, after=-1)
        for e in map(int, queues.kept.nonzero()[0]):
            self._expert(f"L{layer}.expert{e}", int(queues.kept[e]), after=gate)
        self.block_step(f"L{layer}.scatter.readout",
                        self.timing.scatter_readout(m.tokens, m.embed_dim), _SCATTER)

    def _expert(self, label: str, tokens: int, after: int) -> None:
        """``GELU(x_q W1) W2``: the queue's tokens gathered into the first GEMM, the second
        GEMM's rows scatter-accumulated (``out[token] += gate * y``)."""
        m = self.cfg.model
        self.linear(f"{label}.w1", tokens, m.embed_dim, m.expert_hidden, consumer="gelu",
                    reads_residual=True, after=after, gathered=True)
        self.linear(f"{label}.w2", tokens, m.expert_hidden, m.embed_dim, consumer="scatter",
                    after=after)


    # -- the MoE engine (hw/moe_engine.py) -----------------------------------------------------
    def engine_moe(self, layer: int, queues: ExpertQueues) -> None:
        """One MoE layer exactly as the engine runs it (the schedule in :mod:`hw.moe_engine`,
        the composition in :mod:`sim.timing.moe_controller`): router GEMM -> logit serialiser
        -> router, flush and read-out stored; per expert (shared first, then non-empty routed in
        expert order) GEMM1 (+GELU, rows to the hidden buffer) and GEMM2 (from the hidden
        buffer, rows scatter-accumulated), each a queue-store-fed gathered GEMM of one whole
        weight block; then the scatter read-out."""
        from moeaccel.weight_image import ImageLayout

        cfg, m, t = self.cfg, self.cfg.model, self.timing
        img = ImageLayout.of(cfg)
        T, D, H, R = m.tokens, m.embed_dim, m.expert_hidden, m.router_outputs
        # router GEMM: its rows serialised into the router, complete when the serialiser idles
        gate = self._engine_gemm(f"L{layer}.router", T, D, R, img.gate.bytes, "router", -1)
        offset = (gather.latency(cfg, T) + compute_unit.ACT_STAGES - compute_unit.CMD_CYCLES
                  + queue_store.READ_STAGES)
        rows = logit_serialiser.row_cycles(cfg, T, D, offset)
        tokens = router.fed_schedule(cfg, T, logit_serialiser.offer(rows))
        gate.cycles = logit_serialiser.idle_cycle(tokens[-1][0]) + 1
        last_write = max(max(writes) for _, writes in tokens)
        self._add(gate)
        # flush once the router has drained, read-out until it is idle, experts known next cycle
        flush = max(gate.cycles + moe_controller.FLUSH_CYCLES, last_write + 1) - gate.cycles
        entries = int(queues.kept.sum())
        readout = self.block_step(f"L{layer}.router.readout",
                                  flush + t.router_readout(entries)
                                  + moe_controller.KNOWN_AFTER_IDLE, _ROUTER)
        experts = [(f"L{layer}.shared{s}", T, -1) for s in range(m.shared_experts)]
        experts += [(f"L{layer}.expert{e}", int(queues.kept[e]), readout)
                    for e in map(int, queues.kept.nonzero()[0])]
        for label, count, after in experts:
            self._add(self._engine_gemm(f"{label}.w1", count, D, H, img.w1.bytes, "gelu", after))
            self._add(self._engine_gemm(f"{label}.w2", count, H, D, img.w2.bytes, "scatter",
                                        after))
        drain = scatter.next_command_after_rows(cfg) - 1 if experts else 0
        self.block_step(f"L{layer}.scatter.readout", drain + t.scatter_readout(T, D), _SCATTER)

    def _engine_gemm(self, label: str, m: int, k: int, n: int, block_bytes: int,
                     consumer: str, after: int) -> Step:
        """A GEMM of the engine: fed through the queue store and the gather front end, one
        whole weight block fetched into its slot, complete at its last output row."""
        cfg = self.cfg
        step = self._gemm(label, m, k, n, weight_bytes=block_bytes, read_bytes=0, after=after,
                          consumer=consumer, gathered=True)
        cycles = queue_store.gathered_gemm_cycles(cfg, m, k, n)
        busy = list(step.busy)
        busy[0] = step.cycles = cycles
        step.busy = tuple(busy)
        rows = cfg.hardware.compute_unit.rows
        last_rows = m - (-(-m // rows) - 1) * rows
        step.gap = moe_controller.GEMM_GAP
        step.slots = buffers.engine_slots(cfg)
        # the slot is free the cycle after the last weight beat (the last array step)
        step.release = (cycles - compute_unit.latency(cfg)
                        - compute_unit.output_span(cfg, last_rows) + 1)
        step.fetch_overhead = weight_fetch.CMD_CYCLES + weight_fetch.DONE_CYCLES - 1
        step.fetch_after = moe_controller.FETCHED_TO_COMMAND
        return step


def engine_runs(cfg: DesignConfig) -> bool:
    """True when the MoE engine can run the layer's schedule: one whole weight block fits its
    buffer (:func:`sim.buffers.engine_slots`) and the router GEMM is one output tile (the logit
    serialiser). Otherwise :meth:`ScheduleBuilder.moe` keeps the generic composition (column-
    tiled weights, the router fused as a stream consumer): an extrapolation beyond the RTL."""
    return (buffers.engine_slots(cfg) is not None
            and cfg.model.router_outputs <= cfg.hardware.compute_unit.cols)


def build(cfg: DesignConfig, layers: Iterable[int], queues: dict[int, ExpertQueues],
          attention: bool, timing: BlockTiming | None = None) -> list[Step]:
    """Steps of one inference over ``layers`` (MoE layers take their queues from ``queues``);
    ``attention`` adds each layer's attention block (whole-model workloads). Pass one
    ``timing`` to share its memo between inferences."""
    b = ScheduleBuilder(cfg, timing)
    residual = cfg.model.tokens * cfg.model.embed_dim * buffers.operand_bytes(cfg)
    b.transfer("input", read=residual)
    moe_layers = set(cfg.model.moe_layers)
    for layer in layers:
        if attention:
            b.attention(layer)
        if layer in moe_layers:
            b.moe(layer, queues[layer])
        else:
            b.mlp(layer)
        b.end_layer()
    b.transfer("output", write=residual)
    return b.steps
