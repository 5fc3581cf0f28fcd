"""``simulate(cfg, workload)``: schedule, timeline, energy and report of one run.

This is the library behind ``moeaccel sim``; :func:`run` takes names or files like the CLI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moeaccel import config
from moeaccel.config import DesignConfig

from . import energy, queues, schedule, timeline, workloads
from .report import SimResult
from .workloads import Workload, WorkloadSpec


def simulate(cfg: DesignConfig, workload: Workload) -> SimResult:
    """Simulate ``workload`` on ``cfg`` (the config with the workload's model overrides)."""
    steps: list[schedule.Step] = []
    kept = dropped = null = 0
    expert_tokens: dict[int, list[int]] = {}
    timing = schedule.BlockTiming(cfg)
    for i, routing in enumerate(workload.routing):
        layer_queues = {l: queues.fill(cfg, experts) for l, (experts, _) in routing.items()}
        for l, q in layer_queues.items():
            kept += int(q.kept.sum())
            dropped += q.dropped
            null += q.null
            if i == 0:
                expert_tokens[l] = q.kept.tolist()
        steps += schedule.build(cfg, workload.layers, layer_queues, workload.attention, timing)
    tl = timeline.play(cfg, steps)

    busy = np.zeros(len(schedule.BLOCKS), dtype=np.int64)
    macs = sram_read = sram_write = 0
    for s in steps:
        busy += s.busy
        macs += s.macs
        sram_read += s.sram_read_bytes
        sram_write += s.sram_write_bytes
    busy_cycles = dict(zip(schedule.BLOCKS, map(int, busy)))
    busy_cycles["dram"] = tl.dram_busy_cycles
    en = energy.account(cfg, macs=macs, sram_read_bytes=sram_read, sram_write_bytes=sram_write,
                        dram_bytes=tl.weight_bytes + tl.activation_bytes, cycles=tl.total_cycles)
    return SimResult.from_run(cfg, workload, tl, busy_cycles, macs, en,
                              routing={"kept": kept, "dropped": dropped, "null": null},
                              expert_tokens=expert_tokens, steps=len(steps))


def prepare(cfg: DesignConfig | str | Path, spec: WorkloadSpec | str | Path) -> tuple[DesignConfig, Workload]:
    """Load config and workload by name/file if needed, apply the workload's model overrides and
    generate its routing."""
    if not isinstance(cfg, DesignConfig):
        cfg = config.load(cfg)
    if not isinstance(spec, WorkloadSpec):
        spec = workloads.load(spec)
    cfg = spec.apply(cfg)
    return cfg, workloads.build(cfg, spec)


def run(cfg: DesignConfig | str | Path, spec: WorkloadSpec | str | Path) -> SimResult:
    """Simulate a workload (built-in name, YAML or trace file) on a config (preset or file)."""
    return simulate(*prepare(cfg, spec))
