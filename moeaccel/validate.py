"""Cross-validation: the RTL on Verilator against the simulator, case by case.

The library behind ``moeaccel validate``. Each :class:`Case` names a DUT (a registered block or
a component, under a config), a shape or routing, and a measurement bench
(:mod:`moeaccel.benches`). :func:`run_cases` builds each DUT once (the shared cache of
:mod:`moeaccel.rtlsim`), runs the bench on all of its cases in one simulation, and puts the
measured cycles beside the simulator's cycles for the same shapes and routing.

The simulated side goes through the simulator's own composition, not through the timing
function a block's test already asserted: a GEMM is a step of :class:`sim.schedule.ScheduleBuilder`
played by :func:`sim.timeline.play`; the softmax's cycles are the busy cycles the schedule books
for the softmax consuming a scores GEMM; a router layer is the router's busy cycles in the gate
step plus the read-out step of the queue entries :func:`sim.queues.fill` keeps after capacity
(the simulator's capacity model, fed the golden router's choices for the same logits).

Error is ``(simulated - rtl) / rtl`` in percent; the target is within :data:`TOLERANCE_PERCENT`
on every case (the goal: identical).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moeaccel import config, rtlsim
from moeaccel.config import DesignConfig

#: the target bound on ``|error|`` for every case, percent
TOLERANCE_PERCENT = 1.0


@dataclass
class Dut:
    """A design under test: a registered block or a component of ``hw`` under a config."""

    label: str                       # for progress lines, e.g. "compute_unit[tiny]"
    bench: str                       # measurement bench module under moeaccel.benches
    cfg: DesignConfig
    block: str | None = None         # a hw.verilog.BLOCKS name, or
    component: tuple[str, str] | None = None    # (top module name, cache key) of a component
    factory: Callable[[], Any] | None = None

    def build(self, notify: Callable[[str], None] | None = None) -> rtlsim.Build:
        if self.block is not None:
            return rtlsim.build_block(self.block, self.cfg.name, notify=notify)
        name, key = self.component
        return rtlsim.build_component(name, self.factory, key, notify=notify)


@dataclass
class Case:
    """One comparison: ``params`` go to the bench, ``simulate(cfg)`` gives the simulated cycles."""

    name: str
    kind: str                        # gemm, softmax, router, moe_layer, ...
    dut: Dut
    params: dict[str, Any]
    simulate: Callable[[DesignConfig], dict[str, Any]]
    describe: str = ""               # shape or routing in words
    tiny: bool = True                # part of --quick


@dataclass
class CaseResult:
    name: str
    kind: str
    config: str
    describe: str
    rtl_cycles: int
    sim_cycles: int
    error_percent: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def within_bound(self) -> bool:
        return abs(self.error_percent) <= TOLERANCE_PERCENT

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "within_bound": self.within_bound}


# --------------------------------------------------------------------------------------------
# The simulator's side
# --------------------------------------------------------------------------------------------
def sim_gemm(m: int, k: int, n: int, gelu: bool = False) -> Callable[[DesignConfig], dict]:
    """A GEMM with both operands on chip: one schedule step, played by the timeline."""
    def simulate(cfg: DesignConfig) -> dict:
        from sim import schedule, timeline

        b = schedule.ScheduleBuilder(cfg)
        b.on_chip_gemm("gemm", m, k, n, consumer="gelu" if gelu else None)
        return {"cycles": timeline.play(cfg, b.steps).total_cycles}
    return simulate


def sim_softmax(rows: int, length: int) -> Callable[[DesignConfig], dict]:
    """The softmax's busy cycles as the schedule books them for a ``rows x length`` scores
    GEMM it consumes."""
    def simulate(cfg: DesignConfig) -> dict:
        from sim import schedule

        b = schedule.ScheduleBuilder(cfg)
        step = b.steps[b.on_chip_gemm("scores", rows, 1, length, consumer="softmax")]
        return {"cycles": step.busy[schedule.BLOCKS.index("softmax")]}
    return simulate


def sim_router(logits: np.ndarray) -> Callable[[DesignConfig], dict]:
    """A router layer: the router's busy cycles in the gate step, then the read-out step of the
    entries the simulator's queues keep (golden's choices for ``logits``, sim's capacity)."""
    def simulate(cfg: DesignConfig) -> dict:
        from golden import router as golden
        from sim import queues, schedule

        ids, _ = golden.select(logits, cfg)
        experts = np.where(ids < cfg.model.experts, ids, -1)      # null experts compute nothing
        q = queues.fill(cfg, experts)
        b = schedule.ScheduleBuilder(cfg)
        m = cfg.model
        gate = b.steps[b.linear("router", len(logits), m.embed_dim, m.router_outputs,
                                bias=False, consumer="router")]
        readout = b.steps[b.block_step("readout", b.timing.router_readout(int(q.kept.sum())),
                                       schedule.BLOCKS.index("router"))]
        return {"cycles": gate.busy[schedule.BLOCKS.index("router")] + readout.cycles,
                "entries": int(q.kept.sum()), "dropped": q.dropped}
    return simulate


def sim_gather(m: int, k: int, n: int) -> Callable[[DesignConfig], dict]:
    """The gather front end's busy cycles as the schedule books them for a gathered GEMM."""
    def simulate(cfg: DesignConfig) -> dict:
        from sim import schedule

        b = schedule.ScheduleBuilder(cfg)
        step = b.steps[b.linear("w1", m, k, n, gathered=True)]
        return {"cycles": step.busy[schedule.BLOCKS.index("gather")]}
    return simulate


def sim_scatter(rows: int, tokens: int, n: int) -> Callable[[DesignConfig], dict]:
    """An accumulate of ``rows`` output rows arriving one per cycle after the command, then the
    read-out step of ``tokens`` tokens, composed as the schedule composes an expert's second
    GEMM (the producer here: the rows) and the layer's read-out."""
    def simulate(cfg: DesignConfig) -> dict:
        from sim import schedule
        from sim.timing import scatter as scatter_timing

        b = schedule.ScheduleBuilder(cfg)
        # rows offered back to back from the command on: the last is taken in cycle
        # FIRST_ROW_CYCLE + rows - 1, so the producer runs FIRST_ROW_CYCLE + rows cycles
        accumulate = schedule.scattered(cfg, scatter_timing.FIRST_ROW_CYCLE + rows)
        readout = b.steps[b.block_step("readout", b.timing.scatter_readout(tokens, n),
                                       schedule.BLOCKS.index("scatter"))]
        return {"cycles": accumulate + readout.cycles, "readout": readout.cycles}
    return simulate


def sim_engine_layer(routing: str, seed: int, task: int, latency: int, bytes_per_cycle: float
                     ) -> Callable[[DesignConfig], dict]:
    """One MoE layer on the engine: golden's router decides the routing of the crafted layer
    (:func:`moeaccel.benches.routings.crafted`), the simulator's queues
    (:func:`sim.queues.fill`) keep it after capacity, and the simulator's layer schedule
    (:meth:`sim.schedule.ScheduleBuilder.moe`) is played by :func:`sim.timeline.play` with the
    same DRAM latency and bandwidth. Also the simulated counterparts of the engine's counters."""
    def simulate(cfg: DesignConfig) -> dict:
        from golden import moe
        from moeaccel.benches.routings import crafted
        from sim import queues, schedule, timeline

        cfg = cfg.replace({"hardware.dram.latency_cycles": latency,
                           "hardware.dram.bytes_per_cycle": bytes_per_cycle})
        x_q, layer = crafted(cfg, routing, seed, task)
        ids = moe.moe_layer(x_q, layer, cfg, task).routing.ids
        q = queues.fill(cfg, np.where(ids < cfg.model.experts, ids, -1))
        b = schedule.ScheduleBuilder(cfg)
        b.moe(0, q)
        tl = timeline.play(cfg, b.steps)
        ffn = [s for s in b.steps if s.label.endswith((".w1", ".w2"))]
        m, cu = cfg.model, cfg.hardware.compute_unit
        counts = [m.tokens] * m.shared_experts + [int(c) for c in q.kept if c]
        per_tile = (-(-m.expert_hidden // cu.cols) * m.embed_dim
                    + -(-m.embed_dim // cu.cols) * m.expert_hidden)
        return {"cycles": tl.total_cycles, "ffn_cycles": sum(s.cycles for s in ffn),
                "ffn_steps": sum(-(-c // cu.rows) * per_tile for c in counts),
                "weight_wait": tl.weight_wait_cycles, "dram_busy": tl.fetch_busy_cycles,
                "fetches": tl.fetches, "experts": len(counts),
                "entries": int(q.kept.sum()), "dropped": q.dropped}
    return simulate


# --------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------
#: router variants: name -> (preset, model overrides); tests/hw/test_router.py runs these too, so
#: both share one Verilator build per variant.
ROUTER_VARIANTS: dict[str, tuple[str, dict]] = {
    "tiny": ("tiny", {}),
    "tiny-topk-softmax-null-cap": ("tiny", {"model.gating": "topk_softmax",
                                            "model.null_experts": 2,
                                            "model.capacity_factor": 0.75}),
    "tiny-null-cap": ("tiny", {"model.null_experts": 1, "model.capacity_factor": 0.5,
                               "model.top_k": 3}),
    # not a multiple of the expert queues' read-out group (hw.expert_queues.GROUP)
    "tiny-6-experts": ("tiny", {"model.experts": 6}),
}


def _router_dut(variant: str) -> Dut:
    from hw.router import Router

    preset, overrides = ROUTER_VARIANTS[variant]
    cfg = config.load(preset).replace(overrides)
    return Dut(f"router[{variant}]", "router", cfg,
               component=(f"moeaccel_router_{variant.replace('-', '_')}",
                          json.dumps(ROUTER_VARIANTS[variant])),
               factory=lambda: Router(cfg))


def gemm_cases(cfg_name: str, tiny: bool) -> list[Case]:
    cfg = config.load(cfg_name)
    dut = Dut(f"compute_unit[{cfg_name}]", "compute_unit", cfg, block="compute_unit")
    r, c = cfg.hardware.compute_unit.rows, cfg.hardware.compute_unit.cols
    md = cfg.model
    shapes = [("single", 1, 1, 1, False), ("tile", r, r, c, False),
              ("ragged", 2 * r + 3, 7, c + 5, False),
              ("expert.w1+gelu", md.tokens, md.embed_dim, md.expert_hidden, True),
              ("expert.w2", md.tokens, md.expert_hidden, md.embed_dim, False),
              ("scores", md.tokens, md.head_dim, md.tokens, False)]
    return [Case(f"gemm/{cfg_name}/{label}", "gemm", dut, {"m": m, "k": k, "n": n, "gelu": g},
                 sim_gemm(m, k, n, g), f"{m}x{k}x{n}" + (" +GELU" if g else ""), tiny)
            for label, m, k, n, g in shapes]


def softmax_cases(cfg_name: str, tiny: bool) -> list[Case]:
    cfg = config.load(cfg_name)
    dut = Dut(f"softmax[{cfg_name}]", "softmax", cfg, block="softmax")
    t = cfg.model.tokens
    shapes = [(1, 1), (4, 3), (8, 8), (t, t), (2, cfg.hardware.softmax.max_row_length)]
    return [Case(f"softmax/{cfg_name}/{rows}x{length}", "softmax", dut,
                 {"rows": rows, "length": length}, sim_softmax(rows, length),
                 f"{rows} rows of {length}", tiny) for rows, length in shapes]


def router_cases() -> list[Case]:
    from golden.fixed import smax, smin

    out = []
    for variant in ("tiny", "tiny-topk-softmax-null-cap"):
        dut = _router_dut(variant)
        cfg = dut.cfg
        tokens, r = cfg.model.tokens, cfg.model.router_outputs
        bits = cfg.hardware.softmax.input_bits
        rng = np.random.default_rng(7)
        spread = np.clip(np.rint(rng.normal(0, 300, (tokens, r))), smin(bits), smax(bits))
        one = np.zeros((tokens, r), dtype=np.int64)
        one[:, 0] = 1000
        for label, logits in (("random", spread.astype(np.int64)), ("one-expert", one),
                              ("three-tokens", spread[:3].astype(np.int64))):
            out.append(Case(f"router/{variant}/{label}", "router", dut,
                            {"logits": logits.tolist()}, sim_router(logits),
                            f"{len(logits)} tokens, {cfg.model.gating}, top-{cfg.model.top_k}, "
                            f"capacity {cfg.model.expert_capacity}", True))
    return out


def gather_cases() -> list[Case]:
    cfg = config.load("tiny")
    dut = Dut("gather[tiny]", "gather", cfg, block="gather")
    r, c, md = cfg.hardware.compute_unit.rows, cfg.hardware.compute_unit.cols, cfg.model
    rng = np.random.default_rng(11)
    shapes = [("one-token", 1, md.embed_dim, md.expert_hidden),
              ("expert.w1", md.tokens, md.embed_dim, md.expert_hidden),
              ("ragged", 3 * r + 1, 3, 2 * c + 1)]
    return [Case(f"gather/tiny/{label}", "gather", dut,
                 {"m": m, "k": k, "n": n, "tokens": rng.integers(md.tokens, size=m).tolist()},
                 sim_gather(m, k, n), f"{m} ids, {k}x{n}", True) for label, m, k, n in shapes]


def scatter_cases() -> list[Case]:
    cfg = config.load("tiny")
    dut = Dut("scatter[tiny]", "scatter", cfg, block="scatter")
    md, cols = cfg.model, cfg.hardware.compute_unit.cols
    rng = np.random.default_rng(12)
    tiles = -(-md.embed_dim // cols)
    out = []
    for label, m in (("one-entry", 1), ("expert", md.tokens), ("repeats", 2 * md.tokens)):
        queue = rng.integers(md.tokens, size=m).tolist()
        out.append(Case(f"scatter/tiny/{label}", "scatter", dut,
                        {"queue": queue, "n": md.embed_dim, "tokens": md.tokens},
                        sim_scatter(m * tiles, md.tokens, md.embed_dim),
                        f"{m} entries x {md.embed_dim}, read-out {md.tokens}", True))
    return out


#: MoE engine cases: (build variant, routing, task, what it exercises, in --quick)
ENGINE_CASES = (
    ("wide", "uniform", 0, "uniform, softmax_topk", True),
    ("wide", "zipf", 1, "Zipf-skewed", True),
    ("wide", "one_expert", 0, "one expert takes all", True),
    ("wide", "empty", 1, "several empty experts", True),
    ("mixed", "uniform", 0, "shared + routed, topk_softmax", True),
    ("mixed", "zipf", 1, "shared + routed, Zipf, capacity overflow", True),
    ("mixed", "one_expert", 0, "shared + one routed, null expert", True),
    ("m3vit", "uniform", 0, "m3vit-tiny layer, uniform", False),
)
#: engine cases the performance targets apply to: uniform routing (every expert busy, so each
#: fetch has a GEMM to hide behind) on the builds whose expert GEMMs are long enough
#: (embed_dim >= 64). With few active experts (``empty``) the fetches that cannot be hidden
#: (the gate's, and the first routed expert's, known only after the router) dominate.
PERFORMANCE_CASES = ("moe_engine/wide/uniform", "moe_engine/m3vit/uniform")
#: MAC utilisation during the expert FFNs, and fraction of weight-fetch time the prefetch
#: hides with ample DRAM bandwidth (the port's full rate): the targets
UTILISATION_TARGET, HIDING_TARGET = 0.90, 0.80


def engine_cases(quick: bool) -> list[Case]:
    """Whole MoE layers on the engine (the builds of ``tests/hw/test_moe_engine.py``), DRAM at
    the config's latency and the port's full rate, no random stalls."""
    from hw.moe_engine import MoeEngine
    from moeaccel.benches import moe_engine as bench
    from sim.timing.weight_fetch import port_bytes

    duts: dict[str, Dut] = {}
    out = []
    for i, (variant, routing, task, words, tiny) in enumerate(ENGINE_CASES):
        if quick and not tiny:
            continue
        if variant not in duts:
            cfg = bench.variant_config(variant)
            duts[variant] = Dut(f"moe_engine[{variant}]", "moe_engine", cfg,
                                component=(f"moe_engine_{variant}", variant),
                                factory=lambda cfg=cfg: MoeEngine(cfg))
        dut = duts[variant]
        params = {"routing": routing, "seed": 40 + i, "task": task,
                  "latency": dut.cfg.hardware.dram.latency_cycles,
                  "bytes_per_cycle": float(port_bytes(dut.cfg))}
        out.append(Case(f"moe_engine/{variant}/{routing}", "moe_layer", dut, params,
                        sim_engine_layer(**params), words, tiny))
    return out


def all_cases(quick: bool = False) -> list[Case]:
    """Every case; ``quick``: only the ``tiny`` ones."""
    cases = (gemm_cases("tiny", True) + softmax_cases("tiny", True) + router_cases()
             + gather_cases() + scatter_cases() + engine_cases(quick))
    cases += gemm_cases("m3vit-tiny", False) + softmax_cases("m3vit-tiny", False)
    return [c for c in cases if c.tiny or not quick]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def run_cases(cases: list[Case] | None = None, quick: bool = False,
              progress: Callable[[str], None] | None = None) -> list[CaseResult]:
    """Run ``cases`` (default :func:`all_cases`) on the RTL and in the simulator. Cases sharing
    a DUT run in one simulation. ``progress(line)`` reports builds and runs as they happen."""
    say = progress or (lambda line: None)
    cases = all_cases(quick) if cases is None else cases
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.dut.label, []).append(case)
    measured: dict[str, dict] = {}
    for group in groups.values():
        measured.update(_measure(group[0].dut, group, say))
    results = []
    for case in cases:
        rtl = measured[case.name]
        sim = case.simulate(case.dut.cfg)
        error = 100.0 * (sim["cycles"] - rtl["cycles"]) / rtl["cycles"]
        extra = {f"rtl_{k}": v for k, v in rtl.items() if k != "cycles"}
        extra.update({f"sim_{k}": v for k, v in sim.items() if k != "cycles"})
        results.append(CaseResult(case.name, case.kind, case.dut.cfg.name, case.describe,
                                   rtl["cycles"], sim["cycles"], error, extra))
    return results


def _measure(dut: Dut, group: list[Case], say: Callable[[str], None]) -> dict[str, dict]:
    """Build ``dut`` and run its bench over ``group``; the measurements by case name."""
    start = time.monotonic()
    model = dut.build(notify=lambda line: say(f"{dut.label}: {line}"))
    say(f"{dut.label}: running {len(group)} case(s) on Verilator")
    with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
        work = Path(tmp)
        (work / "config.yaml").write_text(dut.cfg.to_yaml())
        (work / "cases.json").write_text(json.dumps([{"name": c.name, **c.params}
                                                     for c in group]))
        env = {"MOEACCEL_CONFIG": str(work / "config.yaml"),
               "MOEACCEL_VALIDATE_CASES": str(work / "cases.json"),
               "MOEACCEL_VALIDATE_RESULTS": str(work / "results.json")}
        rtlsim.run(model, f"moeaccel.benches.{dut.bench}", "measure", env, seed=1,
                   label=dut.label)
        measured = json.loads((work / "results.json").read_text())
    say(f"{dut.label}: done in {time.monotonic() - start:.1f} s")
    return measured


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def table(results: list[CaseResult]) -> str:
    """The comparison as a text table, with a summary line."""
    head = f"{'case':<48} {'shape / routing':<40} {'RTL':>8} {'sim':>8} {'error %':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        flag = "" if r.within_bound else "  OUT OF BOUND"
        lines.append(f"{r.name:<48} {r.describe[:40]:<40} {r.rtl_cycles:>8} {r.sim_cycles:>8} "
                     f"{r.error_percent:>+8.2f}{flag}")
    worst = max((abs(r.error_percent) for r in results), default=0.0)
    exact = sum(r.rtl_cycles == r.sim_cycles for r in results)
    lines.append(f"{len(results)} cases: {exact} identical, worst |error| {worst:.2f} % "
                 f"(bound {TOLERANCE_PERCENT:g} %)")
    return "\n".join(lines)


def performance(results: list[CaseResult]) -> list[dict[str, Any]]:
    """Per engine case, from the RTL's counters (and the simulator's for comparison): MAC
    utilisation during the expert FFNs (``ffn_steps / ffn_cycles``) and the share of weight-fetch
    time the prefetch hides (``1 - weight_wait / dram_busy``), with the targets where they apply
    (:data:`PERFORMANCE_CASES`, ample DRAM bandwidth)."""
    rows = []
    for r in results:
        if r.kind != "moe_layer":
            continue
        x = r.extra
        figures = {side: {"ffn_mac_utilisation": x[f"{side}_ffn_steps"] / x[f"{side}_ffn_cycles"],
                          "prefetch_hidden": 1 - x[f"{side}_weight_wait"] / x[f"{side}_dram_busy"]}
                   for side in ("rtl", "sim")}
        targeted = r.name in PERFORMANCE_CASES
        rows.append({"case": r.name, **figures["rtl"],
                     "sim_ffn_mac_utilisation": figures["sim"]["ffn_mac_utilisation"],
                     "sim_prefetch_hidden": figures["sim"]["prefetch_hidden"],
                     "utilisation_target": UTILISATION_TARGET if targeted else None,
                     "hidden_target": HIDING_TARGET if targeted else None,
                     "meets_targets": (not targeted or (
                         figures["rtl"]["ffn_mac_utilisation"] >= UTILISATION_TARGET
                         and figures["rtl"]["prefetch_hidden"] >= HIDING_TARGET))})
    return rows


def performance_table(results: list[CaseResult]) -> str:
    """The engine's performance figures as a text table ("" without engine cases)."""
    rows = performance(results)
    if not rows:
        return ""
    head = (f"{'MoE engine (RTL counters; sim in brackets)':<48} {'FFN MAC utilisation':>24} "
            f"{'prefetch hides':>22}  target")
    lines = [head, "-" * len(head)]
    for p in rows:
        target = (f">= {100 * p['utilisation_target']:.0f} % / >= {100 * p['hidden_target']:.0f} %"
                  + ("" if p["meets_targets"] else "  MISSED")
                  if p["utilisation_target"] is not None else "-")
        lines.append(f"{p['case']:<48} {100 * p['ffn_mac_utilisation']:>13.1f} % "
                     f"({100 * p['sim_ffn_mac_utilisation']:5.1f} %) "
                     f"{100 * p['prefetch_hidden']:>11.1f} % ({100 * p['sim_prefetch_hidden']:5.1f} %)"
                     f"  {target}")
    return "\n".join(lines)


def to_json(results: list[CaseResult]) -> dict[str, Any]:
    perf = performance(results)
    return {"tolerance_percent": TOLERANCE_PERCENT,
            "cases": [r.to_dict() for r in results],
            "all_within_bound": all(r.within_bound for r in results),
            "engine_performance": perf,
            "utilisation_target": UTILISATION_TARGET, "hidden_target": HIDING_TARGET,
            "all_targets_met": all(p["meets_targets"] for p in perf)}
