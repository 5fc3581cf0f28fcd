"""Golden integer LayerNorm: exact inverse square root, error vs float64, shift invariance."""

from __future__ import annotations

import numpy as np
import pytest

from golden import fixed, layernorm
from golden.linear import quantise_tensor, symmetric_scale
from moeaccel import config


@pytest.mark.parametrize("preset", ["tiny", "m3vit-tiny", "mixtral-layer"])
def test_within_rounding_of_float(preset: str) -> None:
    figures = layernorm.accuracy(config.load(preset), seed=2)
    assert figures["layernorm_rms_err_lsb"] <= 0.35     # rounding alone is 0.29
    assert figures["layernorm_max_err_lsb"] <= 0.6


def test_inverse_sqrt_is_the_exact_floor() -> None:
    rng = np.random.default_rng(0)
    frac = config.load("m3vit-tiny").hardware.layernorm.rsqrt_frac_bits
    for v in [1, 2, 3, 4, (1 << 40) - 1, 1 << 50, *rng.integers(1, 1 << 55, 200).tolist()]:
        r = layernorm.inverse_sqrt(int(v), frac)
        assert r * r * v <= 1 << (2 * frac) < (r + 1) * (r + 1) * v


def _random_ln(cfg, rng, in_scale=1e-3):
    gamma, beta = layernorm.random_weights(cfg.model.embed_dim, rng)
    return layernorm.make(gamma, beta, in_scale, 4.0 / 127, cfg)


def test_adding_a_constant_to_a_row_changes_nothing() -> None:
    cfg = config.load("tiny")
    rng = np.random.default_rng(1)
    ln = _random_ln(cfg, rng)
    x = rng.integers(-2000, 2000, size=(8, cfg.model.embed_dim))
    shifted = x + rng.integers(-5000, 5000, size=(8, 1))
    assert np.array_equal(layernorm.layernorm(x, ln, cfg), layernorm.layernorm(shifted, ln, cfg))


def test_constant_rows_and_extremes() -> None:
    cfg = config.load("tiny")
    bits = cfg.hardware.layernorm.residual_bits
    ln = _random_ln(cfg, np.random.default_rng(2))
    d = cfg.model.embed_dim
    const = np.full((3, d), [[fixed.smin(bits)], [0], [fixed.smax(bits)]])
    assert np.all(layernorm.normalise(const, 0, cfg) == 0)     # V = 0 is guarded, not a crash
    out = layernorm.layernorm(const, ln, cfg)
    beta_only = fixed.requantise(ln.beta_q, ln.out.multiplier, ln.out.shift,
                                 cfg.hardware.compute_unit.operand_bits)
    assert np.array_equal(out, np.broadcast_to(beta_only, out.shape))
    # Full-scale alternating rows: normalised values are +-1 exactly (to norm_frac_bits).
    alt = np.tile([fixed.smin(bits), fixed.smax(bits)], (2, d // 2))
    n = layernorm.normalise(alt, 0, cfg)
    one = 1 << cfg.hardware.layernorm.norm_frac_bits
    assert np.all(np.abs(np.abs(n) - one) <= 1)


def test_rejects_input_wider_than_the_residual() -> None:
    cfg = config.load("tiny")
    ln = _random_ln(cfg, np.random.default_rng(3))
    x = np.zeros((2, cfg.model.embed_dim), dtype=np.int64)
    x[0, 0] = fixed.smax(cfg.hardware.layernorm.residual_bits) + 1
    with pytest.raises(ValueError, match="residual"):
        layernorm.layernorm(x, ln, cfg)


def test_eps_matters_for_tiny_variance() -> None:
    """A row of spread ~1 LSB: eps (quantised to the residual scale) is in V and changes r."""
    cfg = config.load("tiny")
    rng = np.random.default_rng(4)
    x = rng.integers(-1, 2, size=(4, cfg.model.embed_dim))
    big_eps = 10 * cfg.model.embed_dim ** 2
    without = np.abs(layernorm.normalise(x, 0, cfg)).max()
    assert np.abs(layernorm.normalise(x, big_eps, cfg)).max() < without
    in_scale = symmetric_scale(x, 8)
    ln = _random_ln(cfg, rng, in_scale)
    assert ln.eps_q == round(cfg.model.embed_dim ** 2 * layernorm.EPS / in_scale ** 2)
    ref = layernorm.reference(quantise_tensor(x * in_scale, in_scale, 16), ln, cfg) / ln.out_scale
    assert np.max(np.abs(layernorm.layernorm(x, ln, cfg) - ref)) <= 0.6
