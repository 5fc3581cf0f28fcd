"""golden/linear.py: the compute unit's arithmetic against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from golden import linear as gl
from golden.fixed import smax, smin
from moeaccel import config

PRESETS = ["tiny", "m3vit-tiny"]


@pytest.fixture(params=PRESETS)
def cfg(request):
    return config.load(request.param)


def _reference_linear(x, w, b, mult, shift, out_bits, rounding):
    """Element-by-element Python-int reference (no NumPy matmul, no golden.fixed)."""
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    out = np.zeros((len(x), len(w[0])), dtype=np.int64)
    for t in range(len(x)):
        for j in range(len(w[0])):
            acc = int(b[j]) + sum(int(x[t][i]) * int(w[i][j]) for i in range(len(w)))
            p = acc * mult
            if shift:
                p = (p + (1 << (shift - 1))) >> shift if rounding == "half_up" else p >> shift
            out[t, j] = min(hi, max(lo, p))
    return out


@pytest.mark.parametrize("rounding", ["half_up", "truncate"])
def test_linear_matches_python_int_reference(rounding):
    cu = config.load("tiny").replace({"hardware.compute_unit.rounding": rounding}).hardware.compute_unit
    rng = np.random.default_rng(1)
    for m, k, n in [(1, 1, 1), (3, 7, 5), (6, 13, 9)]:
        x = rng.integers(-128, 128, (m, k))
        w = rng.integers(-128, 128, (k, n))
        b = rng.integers(-5000, 5000, n)
        mult, shift = int(rng.integers(1, 1 << 16)), int(rng.integers(0, 24))
        got = gl.linear(x, w, b, mult, shift, cu)
        assert np.array_equal(got, _reference_linear(x, w, b, mult, shift, 8, rounding))


def test_extremes_saturate_and_accumulator_does_not_overflow(cfg):
    cu = cfg.hardware.compute_unit
    k = cu.max_dim
    x = np.full((2, k), smin(cu.operand_bits))
    w = np.full((k, 2), smin(cu.operand_bits))
    w[:, 1] = smax(cu.operand_bits)
    b = np.array([gl.bias_limit(cu) - 1, -(gl.bias_limit(cu) - 1)])
    acc = gl.linear_acc(x, w, b, cu)
    assert acc.max() < 1 << (cu.accumulator_bits - 1) and acc.min() >= -(1 << (cu.accumulator_bits - 1))
    y = gl.linear(x, w, b, 1, 0, cu)
    assert list(y[0]) == [smax(8), smin(8)]
    wide = gl.linear(x, w, b, 1, 20, cu, out_bits=16)
    assert wide.max() <= smax(16) and wide.min() >= smin(16)


def test_bounds_are_enforced(cfg):
    cu = cfg.hardware.compute_unit
    with pytest.raises(ValueError, match="bias_q"):
        gl.linear_acc([[1]], [[1]], [gl.bias_limit(cu)], cu)
    with pytest.raises(ValueError, match="x_q"):
        gl.linear_acc([[128]], [[1]], [0], cu)
    with pytest.raises(ValueError, match="dimension k"):
        gl.linear_acc(np.zeros((1, cu.max_dim + 1)), np.zeros((cu.max_dim + 1, 1)), [0], cu)
    with pytest.raises(ValueError, match="multiplier"):
        gl.linear([[1]], [[1]], [0], 1 << cu.requant_multiplier_bits, 0, cu)
    with pytest.raises(ValueError, match="shift"):
        gl.linear([[1]], [[1]], [0], 1, cu.requant_max_shift + 1, cu)


def test_accuracy_within_half_lsb(cfg):
    for seed in range(3):
        acc = gl.accuracy(cfg, seed)
        assert acc["max_lsb"] <= 0.5 + 1e-2, acc
        assert 0.2 < acc["rms_lsb"] < 0.35, acc  # uniform rounding error: 1/sqrt(12) ~ 0.29
        assert acc["float_rms_rel"] < 0.03, acc


def test_truncate_accuracy_within_one_lsb():
    cfg = config.load("tiny").replace({"hardware.compute_unit.rounding": "truncate"})
    acc = gl.accuracy(cfg, 0)
    assert acc["max_lsb"] <= 1.0 + 1e-2 and acc["max_lsb"] > 0.5


def test_float_wrapper_dequantises_close_to_float(cfg):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 20))
    w = rng.standard_normal((20, 6)) * 0.2
    b = rng.standard_normal(6) * 0.1
    run = gl.linear_quantised(x, w, b, cfg.hardware.compute_unit)
    ref = gl.linear_float(x, w, b)
    assert np.max(np.abs(run.y - ref)) < 0.05 * np.max(np.abs(ref))
    assert 0.9 * smax(8) <= np.max(np.abs(run.y_q)) <= smax(8)  # the output scale fits the peak


def test_gather_and_expert_linear(cfg):
    cu = cfg.hardware.compute_unit
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (10, 8))
    w = rng.integers(-128, 128, (8, 5))
    b = rng.integers(-100, 100, 5)
    ids = np.array([7, 2, 2, 9])
    y = gl.expert_linear(x, ids, w, b, 300, 12, cu)
    for row, tok in enumerate(ids):
        assert np.array_equal(y[row], gl.linear(x[tok:tok + 1], w, b, 300, 12, cu)[0])
    with pytest.raises(ValueError, match="token ids"):
        gl.gather(x, [10])


def test_scatter_accumulate_is_exact_and_finalises(cfg):
    frac = cfg.hardware.softmax.prob_frac_bits
    rng = np.random.default_rng(3)
    tokens, n = 6, 4
    out = np.zeros((tokens, n), dtype=np.int64)
    ids = np.array([0, 3, 3, 5])
    gates = rng.integers(0, (1 << frac) + 1, ids.size)
    y = rng.integers(-128, 128, (ids.size, n))
    out = gl.scatter_accumulate(out, ids, gates, y, cfg)
    expect = np.zeros((tokens, n), dtype=object)
    for tok, g, row in zip(ids, gates, y):
        expect[tok] += [int(g) * int(v) for v in row]
    assert np.array_equal(out, expect.astype(np.int64))
    fin = gl.scatter_finalise(out, cfg)
    real = out / (1 << frac)
    assert np.all(np.abs(fin - np.clip(real, -128, 127)) <= 0.5)
    # a gate of exactly 1.0 and y = -128 twice: -256 saturates only at finalisation
    one = gl.scatter_accumulate(np.zeros((1, 1), np.int64), [0, 0], [1 << frac] * 2,
                                [[-128], [-128]], cfg)
    assert one[0, 0] == -256 << frac and gl.scatter_finalise(one, cfg)[0, 0] == -128
    with pytest.raises(ValueError, match="gates"):
        gl.scatter_accumulate(out, [0], [(1 << frac) + 1], [[0] * n], cfg)
