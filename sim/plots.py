"""Sweep plots (matplotlib, PNG): metrics vs each swept parameter, energy breakdown, roofline,
and the expert-load histogram of the base workload."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from moeaccel.config import DesignConfig  # noqa: E402

from .energy import PARTS  # noqa: E402
from .report import SimResult  # noqa: E402

if TYPE_CHECKING:
    from .sweep import Sweep

DPI = 110


def _positions(values: list[Any]) -> tuple[list[float], list[str], bool]:
    """x positions for parameter values: numeric axis if all are numbers, else categories."""
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return [float(v) for v in values], [], True
    labels = [str(v) for v in distinct]
    return [float(labels.index(str(v))) for v in values], labels, False


def metric_vs_params(out: Path, sweep: "Sweep", rows: list[dict[str, Any]]) -> list[Path]:
    """For each swept parameter: throughput and energy per inference of every run (dots) and
    their median per value (line)."""
    written = []
    for name, values in sweep.params.items():
        if len(values) < 2:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        xs, labels, numeric = _positions([r[name] for r in rows])
        for ax, metric, title in ((axes[0], "inferences_per_s", "throughput (inferences/s)"),
                                  (axes[1], "energy_per_inference_uj", "energy per inference (µJ)")):
            ys = np.array([r[metric] for r in rows], dtype=float)
            ax.scatter(xs, ys, s=8, alpha=0.35, color="tab:blue", label="runs")
            grouped: dict[float, list[float]] = defaultdict(list)
            for x, y in zip(xs, ys):
                grouped[x].append(y)
            keys = sorted(grouped)
            ax.plot(keys, [np.median(grouped[k]) for k in keys], "o-", color="tab:red",
                    label="median")
            ax.set_xlabel(name)
            ax.set_ylabel(title)
            ax.grid(alpha=0.3)
            if not numeric:
                ax.set_xticks(range(len(labels)), labels)
            elif max(keys) / max(min(keys), 1e-9) >= 8 and min(keys) > 0:
                ax.set_xscale("log", base=2)
        axes[0].legend(loc="best", fontsize=8)
        fig.suptitle(f"{sweep.workload.name} on {sweep.config.name}: vs {name} ({len(rows)} runs)")
        fig.tight_layout()
        path = out / f"vs_{name.replace('.', '_')}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written.append(path)
    return written


def energy_breakdown(out: Path, sweep: "Sweep", rows: list[dict[str, Any]]) -> Path:
    """Stacked bars: mean energy per inference by part, for each value of each swept parameter."""
    names = list(sweep.params)
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 1, 3.6 * nrows), squeeze=False)
    colors = dict(zip(PARTS, ("tab:blue", "tab:orange", "tab:red", "tab:gray")))
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[str(r[name])].append(r)
        labels = list(groups)
        bottom = np.zeros(len(labels))
        for part in PARTS:
            heights = np.array([np.mean([r[f"energy_{part}_uj"] / (r["energy_total_uj"] /
                                         r["energy_per_inference_uj"]) for r in groups[l]])
                                for l in labels])
            ax.bar(labels, heights, bottom=bottom, color=colors[part], label=part)
            bottom += heights
        ax.set_xlabel(name)
        ax.tick_params(axis="x", labelrotation=45)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("µJ per inference (mean)")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("energy breakdown")
    fig.tight_layout()
    path = out / "energy_breakdown.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def roofline(out: Path, cfg: DesignConfig, base: SimResult, rows: list[dict[str, Any]]) -> Path:
    """The base design's roofline (ops = 2 per MAC) with every run as a point (GOPS at the run's
    clock vs operations per DRAM byte); other designs' roofs in grey."""
    fig, ax = plt.subplots(figsize=(7, 5))
    intensity = np.array([2 * r["intensity_macs_per_byte"] for r in rows])
    gops = np.array([2 * r["achieved_macs_per_cycle"] * r["clock_mhz"] / 1e3 for r in rows])
    lo, hi = max(intensity.min() / 4, 0.1), intensity.max() * 4
    x = np.geomspace(lo, hi, 200)
    roofs = {(r["peak_macs_per_cycle"], r["dram_bytes_per_cycle"], r["clock_mhz"]) for r in rows}
    for peak, bw, mhz in sorted(roofs)[:24]:
        ax.plot(x, np.minimum(2 * peak, x * bw) * mhz / 1e3, color="0.8", lw=0.8, zorder=1)
    hw = cfg.hardware
    peak = hw.compute_unit.rows * hw.compute_unit.cols
    ax.plot(x, np.minimum(2 * peak, x * hw.dram.bytes_per_cycle) * hw.clock_mhz / 1e3,
            color="black", lw=2, label=f"{cfg.name} roofline", zorder=2)
    ax.scatter(intensity, gops, s=10, alpha=0.5, color="tab:blue", label="sweep runs", zorder=3)
    ax.scatter([2 * base.roofline["intensity_macs_per_byte"]],
               [2 * base.roofline["achieved_macs_per_cycle"] * base.clock_mhz / 1e3],
               marker="*", s=160, color="tab:red", label=f"{cfg.name} base run", zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (ops per DRAM byte)")
    ax.set_ylabel("achieved GOPS")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("roofline (grey: the swept designs' roofs)")
    fig.tight_layout()
    path = out / "roofline.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def expert_load(out: Path, base: SimResult) -> Path:
    """Tokens computed per expert in each MoE layer of the base run's first inference (stacked by
    layer), and the histogram of per-(layer, expert) loads."""
    layers = sorted(base.expert_tokens)
    loads = np.array([base.expert_tokens[l] for l in layers])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bottom = np.zeros(loads.shape[1])
    for layer, counts in zip(layers, loads):
        left.bar(np.arange(loads.shape[1]), counts, bottom=bottom, label=f"layer {layer}")
        bottom += counts
    left.set_xlabel("expert")
    left.set_ylabel("tokens computed (stacked over MoE layers)")
    if len(layers) <= 12:
        left.legend(fontsize=7, ncol=2)
    right.hist(loads.ravel(), bins=min(30, max(5, int(loads.max()) + 1)), color="tab:green")
    right.set_xlabel("tokens per expert per layer")
    right.set_ylabel("(layer, expert) pairs")
    idle = int((loads == 0).sum())
    right.set_title(f"{idle} of {loads.size} expert-layers idle (skipped)")
    fig.suptitle(f"expert load: {base.workload} on {base.config}")
    fig.tight_layout()
    path = out / "expert_load.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_all(out: Path, sweep: "Sweep", rows: list[dict[str, Any]], cfg: DesignConfig,
              base: SimResult) -> list[Path]:
    paths = metric_vs_params(out, sweep, rows)
    paths.append(energy_breakdown(out, sweep, rows))
    paths.append(roofline(out, cfg, base, rows))
    if base.expert_tokens:
        paths.append(expert_load(out, base))
    return paths
