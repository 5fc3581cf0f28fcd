"""Workloads: which layers run and how every MoE layer's tokens are routed.

``load(name_or_file)`` gives a :class:`WorkloadSpec`; ``build(cfg, spec)`` turns it into a
:class:`Workload` (routing arrays for every inference and MoE layer) for a design config. See
``README.md`` here for the YAML keys and the trace format.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeaccel.config import DesignConfig
from moeaccel.errors import UserError

from . import generators, traces
from .spec import WorkloadSpec, builtins, load
from .traces import LayerRouting

__all__ = ["Workload", "WorkloadSpec", "build", "builtins", "load"]


@dataclass(frozen=True)
class Workload:
    """A workload bound to a config: ``layers`` to run, whether ``attention`` runs, and per
    inference the routing of each MoE layer among ``layers``."""

    spec: WorkloadSpec
    layers: tuple[int, ...]
    attention: bool
    routing: tuple[dict[int, LayerRouting], ...]

    @property
    def inferences(self) -> int:
        return len(self.routing)


def build(cfg: DesignConfig, spec: WorkloadSpec) -> Workload:
    """Generate (or read) the routing of ``spec`` for ``cfg`` (already with ``spec.apply``)."""
    if spec.scope == "model":
        layers = tuple(range(cfg.model.layers))
    else:
        layers = (spec.moe_layer(cfg),)
    moe = [l for l in layers if l in cfg.model.moe_layers]
    if spec.routing == "trace":
        routing = traces.load(spec.trace, cfg)
        missing = [l for l in moe if l not in routing]
        if missing:
            raise UserError(f"{spec.trace}: no routing for MoE layer(s) {missing} that the "
                            f"workload runs")
        per_inference = tuple({l: routing[l] for l in moe} for _ in range(spec.inferences))
    elif spec.routing == "golden":
        per_inference = tuple({l: r[l] for l in moe} for r in _golden_routing(cfg, spec))
    else:
        per_inference = tuple({l: generators.generate(cfg, spec, i, l) for l in moe}
                              for i in range(spec.inferences))
    return Workload(spec=spec, layers=layers, attention=spec.scope == "model",
                    routing=per_inference)


def _golden_routing(cfg: DesignConfig, spec: WorkloadSpec) -> list[dict[int, LayerRouting]]:
    """Real routing: the bit-exact golden model (``golden.model``) on a random model calibrated
    from ``spec.seed``, each inference with its task's router. Slow for big models (the random
    model's calibration takes ~30 s for m3vit-tiny): save it once with ``--save-trace``."""
    from golden import model  # only this generator needs the golden model

    x_q, weights = model.random_model(cfg, seed=spec.seed)
    return [model.model(x_q, weights, cfg, (spec.task + i) % cfg.model.tasks).trace(cfg)
            for i in range(spec.inferences)]
