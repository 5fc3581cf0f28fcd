"""The router's per-expert token queues: who goes where, and who is dropped by capacity.

Tokens enter the queues in token order, each with its ``k`` choices in slot order. An expert
accepts at most ``model.expert_capacity`` entries per layer; later entries are dropped (counted,
not computed). A choice of ``-1`` is a null expert (no computation). So for every layer
``kept + dropped + null == tokens * slots`` (tokens are conserved).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moeaccel.config import DesignConfig


@dataclass(frozen=True)
class ExpertQueues:
    """Queue lengths of one MoE layer after capacity: ``kept[e]`` tokens computed by expert e."""

    kept: np.ndarray
    dropped: int
    null: int
    offered: np.ndarray

    @property
    def slots(self) -> int:
        return int(self.kept.sum()) + self.dropped + self.null


def fill(cfg: DesignConfig, experts: np.ndarray) -> ExpertQueues:
    """Fill the queues from a ``(tokens, slots)`` array of expert ids (``-1``: null expert)."""
    flat = experts.reshape(-1)
    real = flat[flat >= 0]
    offered = np.bincount(real, minlength=cfg.model.experts)
    kept = np.minimum(offered, cfg.model.expert_capacity)
    return ExpertQueues(kept=kept, dropped=int(offered.sum() - kept.sum()),
                        null=int(flat.size - real.size), offered=offered)
