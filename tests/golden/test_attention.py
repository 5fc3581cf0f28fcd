"""Golden attention: error vs float64 on the same quantised weights, fused normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from golden import attention, fixed
from golden.softmax import softmax
from moeaccel import config


@pytest.mark.parametrize("preset", ["tiny", "m3vit-tiny"])
def test_attention_within_one_lsb_rms_of_float(preset: str) -> None:
    figures = attention.accuracy(config.load(preset), seed=3)
    assert figures["attention_rms_err_lsb"] <= 1.0
    assert figures["attention_max_err_lsb"] <= 6.0


def test_output_shape_and_range() -> None:
    cfg = config.load("tiny")
    x_q, layer = attention.random_layer(cfg, seed=1)
    out = attention.attention(x_q, layer, cfg)
    assert out.shape == (cfg.model.tokens, cfg.model.embed_dim)
    bits = cfg.hardware.compute_unit.operand_bits
    assert out.min() >= fixed.smin(bits) and out.max() <= fixed.smax(bits)


def test_fused_normalisation_matches_probabilities() -> None:
    """e * (1/sum) per element equals the softmax unit's own probabilities to operand precision."""
    cfg = config.load("tiny")
    sm = cfg.hardware.softmax
    rng = np.random.default_rng(7)
    z = fixed.quantise(rng.normal(0, 2, size=(32, 16)), sm.input_frac_bits, sm.input_bits)
    row = softmax(z, sm)
    e = attention.exp_operands(z, row.max_q, cfg)
    bits = cfg.hardware.compute_unit.operand_bits
    fused = e * 2.0 ** -(bits - 2) * row.recip_q[:, None] * 2.0 ** -sm.recip_frac_bits
    probs = row.probs_q * 2.0 ** -sm.prob_frac_bits
    assert np.max(np.abs(fused - probs)) <= 2.0 ** -(bits - 1) + 1e-3
    assert e.max(axis=-1).min() >= 1 << (bits - 2)   # the row max is in [1, 2)


def test_different_seeds_give_different_layers() -> None:
    cfg = config.load("tiny")
    a = attention.attention(*attention.random_layer(cfg, 0), cfg)
    b = attention.attention(*attention.random_layer(cfg, 1), cfg)
    assert not np.array_equal(a, b)
