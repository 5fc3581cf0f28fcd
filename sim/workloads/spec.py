"""Workload specs: what to run (scope), how tokens are routed, and how many inferences.

A spec comes from a built-in name (``builtin.yaml``), a workload YAML file, or a trace file
(JSONL/NPZ, see :mod:`sim.workloads.traces`). The keys are documented in ``README.md`` here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError, UserError
from moeaccel.yaml_files import read_yaml

BUILTIN_FILE = Path(__file__).parent / "builtin.yaml"
SCOPES = ("model", "layer")
ROUTINGS = ("uniform", "zipf", "task", "topk", "golden", "trace")
TRACE_SUFFIXES = (".jsonl", ".npz")


@dataclass(frozen=True)
class WorkloadSpec:
    """A workload: ``scope`` ``model`` runs every layer of the config's model (attention, dense
    MLP, MoE); ``layer`` runs one MoE layer alone (``layer``, default the first MoE layer).
    Routing comes from the generator ``routing`` (with Zipf exponent ``s``, ``sticky``
    probability, ``null_bias`` on null experts' logits, ``seed``) or from ``trace``.
    ``inferences`` images run back to back, inference ``i`` on task ``(task + i) % tasks``.
    ``model`` overrides model keys of the config (e.g. ``capacity_factor``)."""

    name: str = "custom"
    scope: str = "model"
    layer: int | None = None
    routing: str = "topk"
    s: float = 1.0
    sticky: float = 0.0
    null_bias: float = 0.0
    seed: int = 0
    inferences: int = 1
    task: int = 0
    trace: str | None = None
    model: tuple[tuple[str, Any], ...] = field(default=())

    def replace(self, **changes: Any) -> "WorkloadSpec":
        """A copy with some keys changed and re-validated (used by sweeps)."""
        data = self.to_dict()
        data.update(changes)
        return from_dict(data, where=f"workload {self.name}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model"] = dict(self.model)
        return data

    def apply(self, cfg: DesignConfig) -> DesignConfig:
        """The design config with this workload's model overrides."""
        if not self.model:
            return cfg
        try:
            return cfg.replace({f"model.{k}": v for k, v in self.model})
        except ConfigError as exc:
            raise UserError(f"workload {self.name}: {exc}") from None

    def moe_layer(self, cfg: DesignConfig) -> int:
        """The MoE layer a ``layer``-scope workload runs."""
        if self.layer is None:
            if not cfg.model.moe_layers:
                raise UserError(f"workload {self.name}: the config {cfg.name} has no MoE layer")
            return cfg.model.moe_layers[0]
        if self.layer not in cfg.model.moe_layers:
            raise UserError(f"workload {self.name}: layer {self.layer} is not an MoE layer of "
                            f"{cfg.name} (MoE layers: {list(cfg.model.moe_layers)})")
        return self.layer


def builtins() -> dict[str, dict[str, Any]]:
    """The built-in workload specs as plain data, by name."""
    return yaml.safe_load(BUILTIN_FILE.read_text())


def load(name_or_path: str | Path) -> WorkloadSpec:
    """A spec from a built-in name, a workload YAML file, or a JSONL/NPZ trace file."""
    text = str(name_or_path)
    table = builtins()
    if text in table:
        return from_dict({"name": text, **table[text]}, where=f"workload {text}")
    path = Path(text)
    if path.suffix.lower() in TRACE_SUFFIXES:
        if not path.exists():
            raise UserError(f"{path}: no such trace file")
        return from_dict({"name": path.stem, "routing": "trace", "trace": str(path)}, where=str(path))
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml(path)
    raise UserError(f"{text}: no such workload (built-in: {', '.join(table)}; or a .yaml, "
                    f".jsonl or .npz file)")


def _load_yaml(path: Path) -> WorkloadSpec:
    data = read_yaml(path, "workload file") or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping of workload keys")
    base = data.pop("base", None)
    merged: dict[str, Any] = {"name": path.stem}
    if base is not None:
        table = builtins()
        if base not in table:
            raise UserError(f"{path}: base: unknown built-in workload {base!r} "
                            f"(built-in: {', '.join(table)})")
        merged.update(table[base])
    merged.update(data)
    if isinstance(merged.get("trace"), str):
        merged["trace"] = str(path.parent / merged["trace"])
        merged.setdefault("routing", "trace")
    return from_dict(merged, where=str(path))


_TYPES = {"name": str, "scope": str, "layer": (int, type(None)), "routing": str, "s": (int, float),
          "sticky": (int, float), "null_bias": (int, float), "seed": int, "inferences": int,
          "task": int, "trace": (str, type(None)), "model": (dict, tuple, list)}


def from_dict(data: Mapping[str, Any], where: str) -> WorkloadSpec:
    """Build and validate a spec; errors name ``where`` and the key."""
    for key, value in data.items():
        if key not in _TYPES:
            raise UserError(f"{where}: {key}: unknown workload key (expected one of: "
                            f"{', '.join(_TYPES)})")
        if isinstance(value, bool) or not isinstance(value, _TYPES[key]):
            raise UserError(f"{where}: {key}: wrong type {type(value).__name__} {value!r}")
    values = dict(data)
    model = values.get("model", ())
    values["model"] = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                   for k, v in dict(model).items())) if model else ()
    for k in ("s", "sticky", "null_bias"):
        if k in values:
            values[k] = float(values[k])
    spec = WorkloadSpec(**values)
    checks = [
        (spec.scope in SCOPES, "scope", f"must be one of {', '.join(SCOPES)}, got {spec.scope!r}"),
        (spec.routing in ROUTINGS, "routing",
         f"must be one of {', '.join(ROUTINGS)}, got {spec.routing!r}"),
        (spec.s >= 0, "s", f"must be >= 0, got {spec.s}"),
        (0 <= spec.sticky <= 1, "sticky", f"must be in [0, 1], got {spec.sticky}"),
        (spec.inferences >= 1, "inferences", f"must be >= 1, got {spec.inferences}"),
        (spec.task >= 0, "task", f"must be >= 0, got {spec.task}"),
        ((spec.routing == "trace") == (spec.trace is not None), "trace",
         "give a trace file exactly when routing is 'trace'"),
    ]
    for ok, key, problem in checks:
        if not ok:
            raise UserError(f"{where}: {key}: {problem}")
    return spec
