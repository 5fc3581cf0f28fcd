"""golden/softmax.py: accuracy against float64 softmax, row properties, extremes, formats, table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import softmax as g
from golden.fixed import dequantise, smax, smin
from moeaccel import config
from moeaccel.config import SoftmaxConfig

PRESETS = ["tiny", "m3vit-tiny"]
SM = config.load("m3vit-tiny").hardware.softmax


@pytest.fixture(params=PRESETS)
def cfg(request) -> SoftmaxConfig:
    return config.load(request.param).hardware.softmax


def logit_rows(sm: SoftmaxConfig, max_len: int | None = None):
    """Hypothesis: one row of logits anywhere in the input range, biased to extremes."""
    value = st.one_of(st.integers(smin(sm.input_bits), smax(sm.input_bits)),
                      st.sampled_from([smin(sm.input_bits), smax(sm.input_bits), 0, -1, 1]),
                      st.integers(-4 << sm.input_frac_bits, 4 << sm.input_frac_bits))
    return st.lists(value, min_size=1, max_size=max_len or sm.max_row_length).map(np.array)


def _err(x_q: np.ndarray, sm: SoftmaxConfig) -> np.ndarray:
    got = dequantise(g.softmax(x_q, sm).probs_q, sm.prob_frac_bits)
    return got - g.softmax_float(dequantise(x_q, sm.input_frac_bits))


# ---------------------------------------------------------------------------- accuracy
def test_accuracy_meets_target(cfg):
    design = config.load("tiny" if cfg.max_row_length < 256 else "m3vit-tiny")
    report = g.accuracy(design, seed=0)
    assert set(report) >= {"softmax_max_abs_err", "softmax_max_abs_err_std1",
                           "softmax_max_abs_err_std3"}
    assert 0 < report["softmax_max_abs_err"] <= g.TARGET_MAX_ABS_ERR
    assert report["softmax_max_abs_err"] == max(report["softmax_max_abs_err_std1"],
                                                report["softmax_max_abs_err_std3"])


@pytest.mark.parametrize("length", [16, 100, 256])
@pytest.mark.parametrize("std", [1.0, 3.0])
def test_error_bound_random_rows(length, std):
    rng = np.random.default_rng(length * 10 + int(std))
    assert g.max_abs_error(SM, rng, rows=500, length=length, std=std) <= g.TARGET_MAX_ABS_ERR


@settings(max_examples=300, deadline=None)
@given(logit_rows(SM))
def test_error_bound_any_row(x_q):
    assert np.abs(_err(x_q, SM)).max() <= g.TARGET_MAX_ABS_ERR


def test_sum_frac_bits_16_would_miss_the_target():
    """The sum's fraction bits are what keeps long, peaky rows accurate (documents the choice)."""
    narrow = config.load("m3vit-tiny").replace({"hardware.softmax.sum_frac_bits": 16})
    assert g.accuracy(narrow, seed=0)["softmax_max_abs_err"] > g.TARGET_MAX_ABS_ERR


# ---------------------------------------------------------------------------- row properties
@settings(max_examples=300, deadline=None)
@given(logit_rows(SM))
def test_probabilities_sum_to_one(x_q):
    p = dequantise(g.softmax(x_q, SM).probs_q, SM.prob_frac_bits)
    assert abs(p.sum() - 1.0) <= g.sum_error_bound(SM, x_q.size)


@settings(max_examples=300, deadline=None)
@given(logit_rows(SM))
def test_monotonic_and_max_gets_largest(x_q):
    p = g.softmax(x_q, SM).probs_q
    order = np.argsort(x_q, kind="stable")
    assert np.all(np.diff(p[order]) >= 0)          # larger logit -> probability not smaller
    assert p[np.argmax(x_q)] == p.max()
    assert np.all(p[x_q == x_q.max()] == p.max())


@pytest.mark.parametrize("value", [smin(16), -1000, 0, 77, smax(16)])
@pytest.mark.parametrize("length", [1, 2, 3, 16, 100, 256])
def test_all_equal_logits_give_one_over_n(value, length):
    p = g.softmax(np.full(length, value), SM).probs_q
    assert np.all(p == p[0])
    assert abs(int(p[0]) - (1 << SM.prob_frac_bits) / length) <= 1


@pytest.mark.parametrize("value", [smin(16), 0, smax(16)])
def test_row_of_one_is_exactly_one(cfg, value):
    r = g.softmax(np.array([[value]]), cfg)
    assert r.probs_q.tolist() == [[1 << cfg.prob_frac_bits]]


def test_extremes_min_and_max_in_one_row(cfg):
    lo, hi = smin(cfg.input_bits), smax(cfg.input_bits)
    x_q = np.array([lo, hi, lo, lo, hi])
    p = g.softmax(x_q, cfg).probs_q
    half = 1 << (cfg.prob_frac_bits - 1)
    assert p.tolist() == [0, half, 0, 0, half]


def test_batch_shape_and_row_independence(cfg):
    rng = np.random.default_rng(3)
    x_q = g.quantise_logits(rng.normal(0, 2, size=(3, 5, 7)), cfg)
    r = g.softmax(x_q, cfg)
    assert r.probs_q.shape == (3, 5, 7) and r.max_q.shape == r.recip_q.shape == (3, 5)
    one = g.softmax(x_q[1, 2], cfg)
    assert np.array_equal(one.probs_q, r.probs_q[1, 2]) and one.recip_q == r.recip_q[1, 2]


def test_rejects_bad_inputs(cfg):
    with pytest.raises(ValueError, match="input range"):
        g.softmax(np.array([smax(cfg.input_bits) + 1]), cfg)
    with pytest.raises(ValueError, match="row length"):
        g.softmax(np.zeros(cfg.max_row_length + 1, dtype=np.int64), cfg)


# ---------------------------------------------------------------------------- fused normalisation
@settings(max_examples=200, deadline=None)
@given(logit_rows(SM))
def test_max_and_recip_reconstruct_probabilities(x_q):
    """A consumer fusing the normalisation with the same exponent datapath (fl, t) gets
    p = 2^fl * t * R / 2^m (the {m, 1/s} contract); m is the integer part of the largest z."""
    r = g.softmax(x_q, SM)
    fl, t = g.exponent_parts(x_q, SM)
    fused = 2.0 ** (fl - r.max_q) * dequantise(t, SM.exp_frac_bits) \
        * dequantise(r.recip_q, SM.recip_frac_bits)
    assert np.abs(fused - g.softmax_float(dequantise(x_q, SM.input_frac_bits))).max() \
        <= g.TARGET_MAX_ABS_ERR
    assert r.max_q == fl.max()
    z = dequantise(x_q, SM.input_frac_bits) * math.log2(math.e)
    assert abs(r.max_q - math.floor(z.max())) <= 1


# ---------------------------------------------------------------------------- formats and table
def test_intermediates_fit_their_widths(cfg):
    fm = g.Formats(cfg)
    x_all = np.arange(smin(cfg.input_bits), smax(cfg.input_bits) + 1)
    fl, t = g.exponent_parts(x_all, cfg)
    assert smin(fm.fl_bits) <= fl.min() and fl.max() <= smax(fm.fl_bits)
    assert t.min() == 1 << cfg.exp_frac_bits and t.max() < 1 << fm.t_bits
    assert np.all(np.diff(fl * (1 << cfg.exp_frac_bits) + t - (1 << cfg.exp_frac_bits)) >= 0)
    worst = g.softmax(np.full(cfg.max_row_length, smax(cfg.input_bits)), cfg)
    assert worst.sum_q.max() < 1 << fm.sum_bits
    assert g.softmax(np.array([0]), cfg).recip_q < 1 << fm.recip_bits


def test_table_is_two_to_the_fraction(cfg):
    tab = g.exp2_table(cfg)
    e, ef = cfg.exp_table_entries, cfg.exp_frac_bits
    assert tab.shape == (e, 2) and tab[0, 0] == 1 << ef
    exact = 2.0 ** (np.arange(e) / e) * (1 << ef)
    assert np.abs(tab[:, 0] - exact).max() <= 0.5
    assert tab[-1, 0] + tab[-1, 1] == 2 << ef
    t_bits, d_bits = g.table_field_bits(cfg)
    assert t_bits == ef + 1 and d_bits <= ef


def test_float_wrapper_matches_integer_path(cfg):
    x = np.array([[0.5, -1.25, 3.0, 0.0]])
    assert np.array_equal(g.softmax_quantised_float(x, cfg) * (1 << cfg.prob_frac_bits),
                          g.softmax(g.quantise_logits(x, cfg), cfg).probs_q)
