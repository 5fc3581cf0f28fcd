"""moeaccel/weight_image.py: the DRAM image of a layer decodes back to golden's weights, biases and
requant parameters at the offsets the engine computes (pure Python, no simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from golden import moe
from moeaccel.weight_image import BlockShape, ImageLayout, buffer_slots, slot_bytes, weight_image
from moeaccel import config
from moeaccel.errors import ConfigError


def decode(image: bytes, offset: int, shape: BlockShape):
    """(header int32 [cols], bias [n], W [k, n]) of the block at ``offset``."""
    cols, tiles = shape.cols, shape.tiles
    raw = np.frombuffer(image, dtype=np.uint8, count=shape.bytes, offset=offset)
    wide = raw[:4 * cols * shape.wide_words].view("<i4").reshape(shape.wide_words, cols)
    words = raw[4 * cols * shape.wide_words:].view(np.int8).reshape(tiles, shape.k, cols)
    w = words.transpose(1, 0, 2).reshape(shape.k, tiles * cols)
    bias = wide[1:].ravel()
    assert not w[:, shape.n:].any() and not bias[shape.n:].any(), "padding must be zero"
    return wide[0], bias[:shape.n], w[:, :shape.n]


@pytest.mark.parametrize("overrides", [{}, {"model.shared_experts": 1, "model.experts": 3,
                                            "model.null_experts": 1, "model.expert_hidden": 24,
                                            "model.embed_dim": 36, "model.heads": 1}])
def test_image_decodes_to_the_layer(overrides):
    cfg = config.load("tiny").replace(overrides)
    _, layer = moe.random_layer(cfg, seed=5)
    image, lay = weight_image(layer, cfg)
    assert len(image) == lay.total_bytes
    for t in range(cfg.model.tasks):
        head, bias, w = decode(image, lay.gate_offset(t), lay.gate)
        assert (w == layer.gate_q[t]).all() and not bias.any()
        assert head[:2].tolist() == [layer.logits.multiplier, layer.logits.shift]
    for index, e in enumerate((*layer.experts, *layer.shared)):
        head, bias, w = decode(image, lay.expert_offset(index, False), lay.w1)
        assert (w == e.w1_q).all() and (bias == e.b1_q).all()
        assert head[:4].tolist() == [e.hidden.multiplier, e.hidden.shift, e.act.multiplier,
                                     e.act.shift]
        head, bias, w = decode(image, lay.expert_offset(index, True), lay.w2)
        assert (w == e.w2_q).all() and (bias == e.b2_q).all()
        assert head[:4].tolist() == [e.out.multiplier, e.out.shift, 0, 0]


def test_slots_follow_the_weight_buffer():
    cfg = config.load("tiny")
    one = slot_bytes(cfg)
    assert buffer_slots(cfg.replace({"hardware.buffers.weight_bytes": 2 * one})) == 2
    assert buffer_slots(cfg.replace({"hardware.buffers.weight_bytes": 2 * one - 1})) == 1
    assert buffer_slots(cfg.replace({"hardware.buffers.double_buffered": False})) == 1
    with pytest.raises(ConfigError, match="hardware.buffers.weight_bytes"):
        buffer_slots(cfg.replace({"hardware.buffers.weight_bytes": one - 1}))
    assert ImageLayout.of(cfg).slot_weight_words == 32 * 32 // 4
