"""Accuracy of every golden block against its float64 reference (``moeaccel accuracy``).

Each golden block module exposes ``accuracy(cfg, seed) -> dict`` that measures its own bit-exact
model on seeded random inputs against the float64 reference evaluated on the *same quantised
inputs*, so the figures show the block's own approximation and rounding error, not input
quantisation. This module gathers them and checks the project's targets.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from moeaccel import config
from moeaccel.config import DesignConfig

#: golden modules measured, in report order
BLOCKS = ("linear", "softmax", "gelu", "router", "attention", "layernorm", "model")

#: presets whose MoE layer is measured end to end
MOE_PRESETS = ("tiny", "m3vit-tiny", "mixtral-layer", "deepseek-layer")


@dataclass(frozen=True)
class Target:
    """A figure's bound: ``value <= bound`` (or ``>=`` when ``at_least``)."""

    bound: float
    at_least: bool = False

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value <= self.bound

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}"


def _targets() -> dict[str, Target]:
    """The foundation issue's targets, each taken from the golden module that owns it."""
    from golden import gelu, moe, softmax

    return {
        "softmax_max_abs_err": Target(softmax.TARGET_MAX_ABS_ERR),
        "gelu_max_abs_err": Target(gelu.TARGET_MAX_ABS_ERR),
        "gelu_table_entries": Target(gelu.MAX_TABLE_ENTRIES),
        "router_topk_agreement": Target(1.0, at_least=True),
        "moe_layer_rms_err_lsb": Target(moe.TARGET_RMS_LSB),
    }


TARGETS: dict[str, Target] = _targets()


def measure(cfg: DesignConfig, seed: int = 0,
            moe_presets: tuple[str, ...] = MOE_PRESETS) -> dict[str, Any]:
    """All accuracy figures for ``cfg``'s block formats, plus the MoE layer error per preset."""
    figures: dict[str, Any] = {"config": cfg.name, "seed": seed}
    for block in BLOCKS:
        module = importlib.import_module(f"golden.{block}")
        for key, value in module.accuracy(cfg, seed).items():
            figures[key if key.startswith(f"{block}_") else f"{block}_{key}"] = value
    moe = importlib.import_module("golden.moe")
    figures["moe_layer_rms_err_lsb"] = {
        name: moe.accuracy(config.load(name), seed)["moe_layer_rms_err_lsb"] for name in moe_presets}
    return figures


def check(figures: dict[str, Any]) -> dict[str, bool]:
    """For each targeted figure, whether it meets its target (per-preset figures: all must)."""
    verdicts = {}
    for key, target in TARGETS.items():
        if key not in figures:
            continue
        value = figures[key]
        values = value.values() if isinstance(value, dict) else [value]
        verdicts[key] = all(target.met(float(v)) for v in values)
    return verdicts


def table(figures: dict[str, Any]) -> str:
    """A readable Markdown table of the figures, their targets and verdicts."""
    verdicts = check(figures)
    lines = ["| figure | value | target | met |", "|---|---|---|---|"]
    for key, value in figures.items():
        if key in ("config", "seed"):
            continue
        target = TARGETS.get(key)
        verdict = "" if key not in verdicts else ("yes" if verdicts[key] else "**NO**")
        if isinstance(value, dict):
            shown = ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
        else:
            shown = _fmt(value)
        lines.append(f"| {key} | {shown} | {target or ''} | {verdict} |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
