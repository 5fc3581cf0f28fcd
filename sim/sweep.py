"""Design-space sweeps: cross lists of parameters, simulate every point in parallel, write a CSV
and plots. The library behind ``moeaccel sweep SWEEP.yaml --out DIR``.

A sweep file::

    config: m3vit-tiny          # preset or design YAML (relative to the sweep file)
    workload: m3vit-tiny        # built-in workload, workload YAML or trace
    params:                     # every combination of these lists is one run
      array: [8, 16, 32]        # an alias (see ALIASES) ...
      hardware.dram.latency_cycles: [32, 64]   # ... or any dotted config key
      workload.sticky: [0.0, 0.5]              # ... or workload.<key>

Each point is the base config with the workload's model overrides, then the point's config
overrides; the workload spec with the point's ``workload.*`` overrides. Every point is built and
validated before anything runs, so a bad key or value fails at once with one line naming it.
"""

from __future__ import annotations

import csv
import itertools
import multiprocessing
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from moeaccel import config
from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError, UserError
from moeaccel.yaml_files import read_yaml

from . import buffers, simulator, workloads
from .report import SimResult
from .workloads import Workload, WorkloadSpec

#: short names for the parameters people sweep most; the value is the list of keys it sets
ALIASES: dict[str, tuple[str, ...]] = {
    "array": ("hardware.compute_unit.rows", "hardware.compute_unit.cols"),
    "clock_mhz": ("hardware.clock_mhz",),
    "dram_bytes_per_cycle": ("hardware.dram.bytes_per_cycle",),
    "dram_latency_cycles": ("hardware.dram.latency_cycles",),
    "weight_buffer_bytes": ("hardware.buffers.weight_bytes",),
    "activation_buffer_bytes": ("hardware.buffers.activation_bytes",),
    "output_buffer_bytes": ("hardware.buffers.output_bytes",),
    "double_buffered": ("hardware.buffers.double_buffered",),
    "experts": ("model.experts",),
    "top_k": ("model.top_k",),
    "capacity_factor": ("model.capacity_factor",),
    "gating": ("model.gating",),
    "routing": ("workload.routing",),
    "skew": ("workload.s",),
    "sticky": ("workload.sticky",),
}
SWEEP_KEYS = ("config", "workload", "params")

#: metric columns of results.csv, in order
METRICS = ("total_cycles", "latency_ms", "tokens_per_s", "inferences_per_s", "mac_utilisation",
           "dram_stall_cycles", "dram_weight_bytes", "dram_activation_bytes", "tokens_dropped",
           "energy_mac_uj", "energy_buffers_uj", "energy_dram_uj", "energy_static_uj",
           "energy_total_uj", "energy_per_inference_uj", "intensity_macs_per_byte",
           "achieved_macs_per_cycle", "peak_macs_per_cycle", "dram_bytes_per_cycle",
           "clock_mhz", "busy_compute_unit", "busy_softmax", "busy_gelu", "busy_router",
           "busy_gather", "busy_scatter", "busy_dram")


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep: the base design and workload and the lists to cross (by parameter)."""

    path: str
    config: DesignConfig
    workload: WorkloadSpec
    params: dict[str, list[Any]]

    def points(self) -> list[dict[str, Any]]:
        """Every combination, as ``{parameter: value}`` in the file's parameter order."""
        names = list(self.params)
        return [dict(zip(names, values)) for values in itertools.product(*self.params.values())]


def load(path: str | Path) -> Sweep:
    """Read and check a sweep file (keys, lists, and that every point builds)."""
    path = Path(path)
    data = read_yaml(path, "sweep file")
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    for key in data:
        if key not in SWEEP_KEYS:
            raise UserError(f"{path}: {key}: unknown key (expected: {', '.join(SWEEP_KEYS)})")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise UserError(f"{path}: params: must map parameter names to lists of values")
    for name, values in params.items():
        _resolve(path, name)
        if not isinstance(values, list) or not values:
            raise UserError(f"{path}: params.{name}: must be a non-empty list of values")
    cfg_ref = _relative(path, str(data.get("config", "m3vit-tiny")))
    wl_ref = _relative(path, str(data.get("workload", "m3vit-tiny")))
    sweep = Sweep(path=str(path), config=config.load(cfg_ref), workload=workloads.load(wl_ref),
                  params={str(k): list(v) for k, v in params.items()})
    for point in sweep.points():
        point_config(sweep, point)
    return sweep


def _relative(path: Path, ref: str) -> str:
    candidate = path.parent / ref
    return str(candidate) if Path(ref).suffix and candidate.exists() else ref


def _resolve(path: Path | str, name: str) -> tuple[str, ...]:
    if name in ALIASES:
        return ALIASES[name]
    if name.startswith(("hardware.", "model.", "energy.")):
        return (name,)
    if name.startswith("workload.") and name.split(".", 1)[1] in WorkloadSpec.__dataclass_fields__:
        return (name,)
    raise UserError(f"{path}: params.{name}: unknown parameter (use a dotted config key such as "
                    f"hardware.clock_mhz, workload.<key>, or one of: {', '.join(ALIASES)})")


def _split(sweep: Sweep, point: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A point's config overrides and workload overrides."""
    cfg_over: dict[str, Any] = {}
    wl_over: dict[str, Any] = {}
    for name, value in point.items():
        keys = _resolve(sweep.path, name)
        if name == "array" and isinstance(value, str) and "x" in value:
            rows, _, cols = value.partition("x")
            values = [_int(sweep, name, rows), _int(sweep, name, cols)]
        else:
            values = [value] * len(keys)
        for key, v in zip(keys, values):
            if key.startswith("workload."):
                wl_over[key.split(".", 1)[1]] = v
            else:
                cfg_over[key] = v
    return cfg_over, wl_over


def _int(sweep: Sweep, name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{sweep.path}: params.{name}: array sizes are N or 'ROWSxCOLS', "
                        f"got {text!r}") from None


def _label(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def point_config(sweep: Sweep, point: dict[str, Any]) -> tuple[DesignConfig, WorkloadSpec]:
    """The design config and workload spec of one point (validated)."""
    cfg_over, wl_over = _split(sweep, point)
    label = _label(point)
    try:
        spec = sweep.workload.replace(**wl_over) if wl_over else sweep.workload
        cfg = spec.apply(sweep.config).replace(cfg_over)
        buffers.check(cfg)
        if spec.scope == "layer":
            spec.moe_layer(cfg)
    except UserError as exc:
        raise UserError(f"{sweep.path}: point ({label}): {exc}") from None
    return cfg, spec


# -- running ----------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _workload(cfg: DesignConfig, spec: WorkloadSpec) -> Workload:
    """Routing depends only on the model and the spec: share it between points of a worker."""
    return workloads.build(cfg, spec)


def _routing_key(cfg: DesignConfig, spec: WorkloadSpec) -> DesignConfig:
    """A config that differs only in ``model`` from the default, so that points that share the
    model and workload share the routing cache entry (golden routing needs the whole config:
    its arithmetic depends on the hardware's number formats)."""
    return cfg if spec.routing == "golden" else DesignConfig(name=cfg.name, model=cfg.model)


_SWEEP: Sweep | None = None


def _init_worker(sweep: Sweep) -> None:
    global _SWEEP
    _SWEEP = sweep


def _run_index(item: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any] | str]:
    """Simulate one point; a user error comes back as its message (exceptions with custom
    constructors do not cross process boundaries)."""
    index, point = item
    assert _SWEEP is not None
    try:
        cfg, spec = point_config(_SWEEP, point)
    except UserError as exc:
        return index, str(exc)
    try:
        return index, row(point, simulator.simulate(cfg, _workload(_routing_key(cfg, spec), spec)))
    except UserError as exc:
        return index, f"{_SWEEP.path}: point ({_label(point)}): {exc}"


def row(point: dict[str, Any], r: SimResult) -> dict[str, Any]:
    """One CSV row: the point's parameters, then :data:`METRICS`."""
    metrics = {
        "total_cycles": r.total_cycles, "latency_ms": r.latency_ms,
        "tokens_per_s": r.tokens_per_s, "inferences_per_s": r.inferences_per_s,
        "mac_utilisation": r.mac_utilisation, "dram_stall_cycles": r.dram_stall_cycles,
        "dram_weight_bytes": r.dram_bytes["weights"],
        "dram_activation_bytes": r.dram_bytes["activations"],
        "tokens_dropped": r.tokens_dropped,
        **{f"energy_{p}_uj": v for p, v in r.energy_uj.items()},
        "energy_per_inference_uj": r.energy_per_inference_uj,
        "intensity_macs_per_byte": r.roofline["intensity_macs_per_byte"],
        "achieved_macs_per_cycle": r.roofline["achieved_macs_per_cycle"],
        "peak_macs_per_cycle": r.roofline["peak_macs_per_cycle"],
        "dram_bytes_per_cycle": r.roofline["dram_bytes_per_cycle"],
        "clock_mhz": r.clock_mhz,
        **{f"busy_{b}": c for b, c in r.busy_cycles.items()},
    }
    return {**{k: ("null" if v is None else v) for k, v in point.items()},
            **{k: metrics[k] for k in METRICS}}


def run(sweep: Sweep, jobs: int | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Simulate every point on ``jobs`` processes (default: all cores); rows in point order."""
    points = sweep.points()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(points)))
    items = list(enumerate(points))
    rows: list[dict[str, Any] | str | None] = [None] * len(points)
    with _progress(len(points), progress) as bar:
        if jobs == 1:
            _init_worker(sweep)
            results = map(_run_index, items)
            for index, result in results:
                rows[index] = result
                bar.update()
        else:
            ctx = multiprocessing.get_context("fork")
            chunk = max(1, min(16, len(points) // (jobs * 8)))
            with ctx.Pool(jobs, initializer=_init_worker, initargs=(sweep,)) as pool:
                for index, result in pool.imap_unordered(_run_index, items, chunksize=chunk):
                    rows[index] = result
                    bar.update()
    for result in rows:
        if isinstance(result, str):
            raise UserError(result)
    return [r for r in rows if isinstance(r, dict)]


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm
    return tqdm(total=total, unit="run", desc="sweep", disable=not enabled, dynamic_ncols=True)


def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def sweep_to_dir(path: str | Path, out: str | Path, jobs: int | None = None,
                 progress: bool = True, plots: bool = True) -> list[Path]:
    """Load a sweep file, run it, write ``results.csv`` and the plots into ``out``; returns the
    files written."""
    from . import plots as plotting

    sweep = load(path)
    rows = run(sweep, jobs=jobs, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.csv"]
    write_csv(written[0], rows)
    if plots:
        cfg, workload = simulator.prepare(sweep.config, sweep.workload)
        base = simulator.simulate(cfg, workload)
        written += plotting.write_all(out, sweep, rows, cfg, base)
    return written
