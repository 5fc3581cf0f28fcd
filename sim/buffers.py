"""On-chip buffers: what fits, how weights are tiled, and when activations spill to DRAM.

Rules the schedule (:mod:`sim.schedule`) applies:

* **Element sizes.** Weights and activations are ``operand_bits`` integers (whole bytes each);
  biases are ``accumulator_bits`` integers (they preload the accumulators).
* **Weight slots.** With ``hardware.buffers.double_buffered`` the weight buffer is two slots of
  half its size (ping/pong: the next weights are fetched into one while the array reads the
  other); otherwise one slot of the whole buffer, and a fetch waits for the previous compute.
* **MoE layers on the engine** (``hw/moe_engine.py``) use the engine's own rule instead
  (:func:`engine_slots`, the ONE definition :func:`moeaccel.weight_image.buffer_slots`): a slot holds
  one whole weight block (:class:`moeaccel.weight_image.BlockShape`: header, padded bias, weights), two
  slots when two fit ``weight_bytes`` (and ``double_buffered``), else one; blocks are never
  tiled by columns. Only when not even one block fits (a layer the engine cannot run) does the
  simulator fall back to the column tiling above: an extrapolation beyond the RTL.
* **Weight tiling.** A ``k x n`` weight matrix (plus its ``n`` biases) that does not fit one slot
  is split by output columns into chunks of the largest multiple of ``compute_unit.cols`` columns
  that fits, the last chunk taking the rest; each chunk is one command to the compute unit over
  all of the GEMM's tokens, so every weight byte is still fetched exactly once. If not even
  ``cols`` columns fit, the design is rejected (the array could not be fed).
* **Activations.** The layer input (the residual stream, ``tokens x embed_dim``) is held in the
  activation buffer; if it does not fit, every GEMM that reads it streams it from DRAM. An
  intermediate result (Q/K/V, scores, hidden layer) is written to the output buffer and read from
  there by its consumer; if it does not fit, it is written to DRAM and read back.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError


def operand_bytes(cfg: DesignConfig) -> int:
    """Bytes per weight or activation element."""
    return math.ceil(cfg.hardware.compute_unit.operand_bits / 8)


def bias_bytes(cfg: DesignConfig) -> int:
    """Bytes per bias (an accumulator-width integer)."""
    return math.ceil(cfg.hardware.compute_unit.accumulator_bits / 8)


def weight_slot_bytes(cfg: DesignConfig) -> int:
    """Bytes of one weight-buffer slot (half the buffer when double-buffered)."""
    b = cfg.hardware.buffers
    return b.weight_bytes // 2 if b.double_buffered else b.weight_bytes


def weight_matrix_bytes(cfg: DesignConfig, k: int, n: int, bias: bool) -> int:
    """Bytes of a ``k x n`` weight matrix plus its ``n`` biases when ``bias``."""
    return n * (k * operand_bytes(cfg) + (bias_bytes(cfg) if bias else 0))


def column_chunks(cfg: DesignConfig, k: int, n: int, bias: bool) -> list[int]:
    """Output-column chunks of a ``k x n`` weight matrix such that each fits one weight slot."""
    slot = weight_slot_bytes(cfg)
    per_col = weight_matrix_bytes(cfg, k, 1, bias)
    if n * per_col <= slot:
        return [n]
    cols = cfg.hardware.compute_unit.cols
    fit = (slot // per_col) // cols * cols
    if fit == 0:
        raise ConfigError("hardware.buffers.weight_bytes",
                          f"a {k} x {cols} weight tile ({cols * per_col} bytes) does not fit one "
                          f"weight slot of {slot} bytes")
    full, rest = divmod(n, fit)
    return [fit] * full + ([rest] if rest else [])


def engine_slots(cfg: DesignConfig) -> int | None:
    """Weight slots of the MoE engine for ``cfg`` (:func:`moeaccel.weight_image.buffer_slots`: 2 or
    1), or ``None`` when not even one weight block fits ``buffers.weight_bytes``."""
    from moeaccel.weight_image import buffer_slots

    try:
        return buffer_slots(cfg)
    except ConfigError:
        return None


def residual_spills(cfg: DesignConfig) -> bool:
    """True when the layer input (tokens x embed_dim) does not fit the activation buffer."""
    m = cfg.model
    return m.tokens * m.embed_dim * operand_bytes(cfg) > cfg.hardware.buffers.activation_bytes


def intermediate_spills(cfg: DesignConfig, nbytes: int) -> bool:
    """True when an intermediate result of ``nbytes`` does not fit the output buffer."""
    return nbytes > cfg.hardware.buffers.output_bytes


def check(cfg: DesignConfig) -> None:
    """Reject a design whose weight slots cannot hold one column tile of every weight matrix of
    its model (raises :class:`ConfigError` naming ``hardware.buffers.weight_bytes``)."""
    m = cfg.model
    column_chunks(cfg, m.embed_dim, m.router_outputs, bias=False)
    for k, n in ((m.embed_dim, 3 * m.embed_dim), (m.embed_dim, m.mlp_hidden),
                 (m.mlp_hidden, m.embed_dim), (m.embed_dim, m.expert_hidden),
                 (m.expert_hidden, m.embed_dim)):
        column_chunks(cfg, k, n, bias=True)
