"""The MoE layer's weights as the engine reads them from DRAM: ONE definition of the layout,
used by the hardware (addresses, sizes) and by the testbench's DRAM model (the bytes).

Every matrix ``W [k, n]`` (int8) with its bias ``b [n]`` (int32, accumulator units) and its
requantisation parameters is one **block** of bytes, little-endian, in the order the engine's
weight buffer stores it (``cols = hardware.compute_unit.cols``, ``tiles = ceil(n / cols)``)::

    header   cols int32 lanes: [multiplier, shift, act_multiplier, act_shift, 0, ...]
    bias     tiles words of cols int32: b[j*cols + c] (zero past n)
    weights  tiles * k words of cols int8: word j*k + kk holds W[kk, j*cols + c] (zero past n)

i.e. ``4*cols*(1 + tiles) + k*tiles*cols`` bytes; the header and bias words are "wide words"
(``4*cols`` bytes), the weights "weight words" (``cols`` bytes), in the compute unit's tile order
(output tile ``j``, then reduction index ``kk``). The header of an expert's W1 block carries the
hidden requant (to GELU's input) and the activation requant; W2's the output requant (act fields
0); a gate block the router-logit requant and a zero bias.

The image (:func:`weight_image`): the ``tasks`` gate blocks (``D x R``) first, then one expert
record per routed expert ``0..E-1`` followed by the shared experts, each record the W1 block
(``D x H``) then the W2 block (``H x D``). Every block size is a multiple of the DRAM port width
when it divides ``cols`` (checked by the engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError

#: int32 fields of a block header, in lane order
HEADER_FIELDS = ("multiplier", "shift", "act_multiplier", "act_shift")


@dataclass(frozen=True)
class BlockShape:
    """Sizes of one ``k x n`` block for a compute unit of ``cols`` columns."""

    k: int
    n: int
    cols: int

    @property
    def tiles(self) -> int:
        return math.ceil(self.n / self.cols)

    @property
    def wide_words(self) -> int:
        """Header + bias words (``4*cols`` bytes each)."""
        return 1 + self.tiles

    @property
    def weight_words(self) -> int:
        """Weight words (``cols`` bytes each)."""
        return self.k * self.tiles

    @property
    def bytes(self) -> int:
        return 4 * self.cols * self.wide_words + self.cols * self.weight_words


@dataclass(frozen=True)
class ImageLayout:
    """Byte offsets of every block of a layer's image (constants the engine computes with)."""

    gate: BlockShape
    w1: BlockShape
    w2: BlockShape
    tasks: int
    experts: int           # routed
    shared: int

    @classmethod
    def of(cls, cfg: DesignConfig) -> "ImageLayout":
        m, cols = cfg.model, cfg.hardware.compute_unit.cols
        return cls(BlockShape(m.embed_dim, m.router_outputs, cols),
                   BlockShape(m.embed_dim, m.expert_hidden, cols),
                   BlockShape(m.expert_hidden, m.embed_dim, cols),
                   m.tasks, m.experts, m.shared_experts)

    @property
    def expert_base(self) -> int:
        return self.tasks * self.gate.bytes

    @property
    def expert_bytes(self) -> int:
        return self.w1.bytes + self.w2.bytes

    @property
    def total_bytes(self) -> int:
        return self.expert_base + (self.experts + self.shared) * self.expert_bytes

    def gate_offset(self, task: int) -> int:
        return task * self.gate.bytes

    def expert_offset(self, index: int, second: bool) -> int:
        """Block of expert record ``index`` (routed ``0..E-1``, then shared ``E..``): W1 or W2."""
        return self.expert_base + index * self.expert_bytes + (self.w1.bytes if second else 0)

    @property
    def slot_weight_words(self) -> int:
        """Weight words one ping/pong slot of the engine's weight buffer holds (largest block)."""
        return max(b.weight_words for b in (self.gate, self.w1, self.w2))

    @property
    def slot_wide_words(self) -> int:
        return max(b.wide_words for b in (self.gate, self.w1, self.w2))


def slot_bytes(cfg: DesignConfig) -> int:
    """On-chip bytes of one weight-buffer slot: the largest block's header, bias and weight
    words."""
    img, cols = ImageLayout.of(cfg), cfg.hardware.compute_unit.cols
    return img.slot_weight_words * cols + img.slot_wide_words * 4 * cols


def check_formats(cfg: DesignConfig) -> None:
    """``ConfigError`` unless the compute unit's formats are the image's: int8 weights and
    int32 header/bias words (the only formats the image and the engine's memories implement)."""
    cu = cfg.hardware.compute_unit
    if (cu.operand_bits, cu.accumulator_bits) != (8, 32):
        raise ConfigError("hardware.compute_unit.operand_bits",
                          f"the MoE engine's weight image holds int8 weights and int32 biases; "
                          f"got operand_bits {cu.operand_bits}, accumulator_bits "
                          f"{cu.accumulator_bits}")


def buffer_slots(cfg: DesignConfig) -> int:
    """Slots of the engine's weight buffer: 2 (ping/pong: the next matrix is fetched while the
    current one computes) when ``buffers.double_buffered`` and two slots fit
    ``buffers.weight_bytes``, else 1 (the next fetch waits until the current matrix has been
    streamed). ``ConfigError`` if not even one fits."""
    buf = cfg.hardware.buffers
    one = slot_bytes(cfg)
    if buf.double_buffered and 2 * one <= buf.weight_bytes:
        return 2
    if one <= buf.weight_bytes:
        return 1
    raise ConfigError("hardware.buffers.weight_bytes",
                      f"{buf.weight_bytes} bytes cannot hold one expert matrix block of the MoE "
                      f"engine ({one} bytes)")


def block_bytes(w: np.ndarray, b: np.ndarray, header: tuple[int, int, int, int],
                shape: BlockShape) -> bytes:
    """One block (see the module docstring) of ``w [k, n]``, ``b [n]`` and ``header``."""
    cols, tiles = shape.cols, shape.tiles
    assert w.shape == (shape.k, shape.n) and b.shape == (shape.n,)
    head = np.zeros(cols, dtype="<i4")
    head[:len(header)] = header
    bias = np.zeros(tiles * cols, dtype="<i4")
    bias[:shape.n] = b
    wp = np.zeros((shape.k, tiles * cols), dtype=np.int8)
    wp[:, :shape.n] = w
    weights = wp.reshape(shape.k, tiles, cols).transpose(1, 0, 2)   # [tile, kk, lane]
    return head.tobytes() + bias.tobytes() + weights.astype(np.int8).tobytes()


def weight_image(layer, cfg: DesignConfig) -> tuple[bytes, ImageLayout]:
    """The DRAM image of a :class:`golden.moe.MoeLayer` and its layout."""
    lay = ImageLayout.of(cfg)
    parts = []
    zero_bias = np.zeros(lay.gate.n, dtype=np.int64)
    for t in range(lay.tasks):
        parts.append(block_bytes(layer.gate_q[t], zero_bias,
                                 (layer.logits.multiplier, layer.logits.shift, 0, 0), lay.gate))
    for e in (*layer.experts, *layer.shared):
        parts.append(block_bytes(e.w1_q, e.b1_q, (e.hidden.multiplier, e.hidden.shift,
                                                  e.act.multiplier, e.act.shift), lay.w1))
        parts.append(block_bytes(e.w2_q, e.b2_q, (e.out.multiplier, e.out.shift, 0, 0), lay.w2))
    image = b"".join(parts)
    assert len(image) == lay.total_bytes
    return image, lay
