"""golden/gelu.py: accuracy against exact erf-GELU, shape properties, formats and the table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from golden import gelu as g
from golden.fixed import dequantise, quantise, smax, smin
from moeaccel import config
from moeaccel.config import GeluConfig

PRESETS = ["tiny", "m3vit-tiny"]


@pytest.fixture(params=PRESETS)
def cfg(request) -> GeluConfig:
    return config.load(request.param).hardware.gelu


def _err_grid(ge: GeluConfig) -> tuple[np.ndarray, np.ndarray]:
    x_q = g.representable_inputs(ge)
    y = dequantise(g.gelu(x_q, ge), ge.output_frac_bits)
    return x_q, y - g.gelu_float(dequantise(x_q, ge.input_frac_bits))


def test_error_bound_every_input_in_range(cfg):
    x_q, err = _err_grid(cfg)
    assert x_q.size == 16 * 2**cfg.input_frac_bits + 1  # all of [-8, 8]
    assert np.max(np.abs(err)) <= g.TARGET_MAX_ABS_ERR


def test_accuracy_report_matches_grid(cfg):
    design = config.load("m3vit-tiny")
    report = g.accuracy(design, seed=0)
    _, err = _err_grid(design.hardware.gelu)
    assert report["gelu_max_abs_err"] == pytest.approx(float(np.max(np.abs(err))))
    assert report["gelu_max_abs_err"] <= g.TARGET_MAX_ABS_ERR
    assert report["gelu_table_entries"] == design.hardware.gelu.table_entries <= g.MAX_TABLE_ENTRIES


def test_float_reference_is_exact_gelu():
    # Independent check of gelu_float: x * Phi(x) from the erf definition at a few points.
    for x in (-6.0, -2.5, -0.75, -1e-3, 0.0, 0.3, 1.0, 3.7):
        assert g.gelu_float(x) == pytest.approx(0.5 * x * (1 + math.erf(x / math.sqrt(2))),
                                                abs=1e-15)
    u = np.linspace(0, 8, 101)
    assert np.allclose(g.delta_float(u), np.maximum(u, 0) - g.gelu_float(u), atol=1e-15)


def test_monotonic_where_exact_gelu_is(cfg):
    x_q, _ = _err_grid(cfg)
    y = g.gelu(x_q, cfg)
    exact = g.gelu_float(dequantise(x_q, cfg.input_frac_bits))
    # exact GELU decreases up to its minimum at x = -0.7518; from there on it increases
    start = int(np.argmin(exact))
    assert -0.76 < dequantise(x_q[start], cfg.input_frac_bits) < -0.75
    tail = x_q >= quantise(-0.75, cfg.input_frac_bits, cfg.input_bits)
    assert np.all(np.diff(y[tail]) >= 0)
    # ... and it is strictly increasing (output LSB permitting) for x >= 0
    pos = x_q >= 0
    assert np.all(np.diff(y[pos]) > 0)


def test_odd_part_is_exactly_x(cfg):
    # GELU(x) - GELU(-x) = x exactly; the unit keeps it bit for bit (delta is even, x is a whole
    # number of output LSBs, so the one rounding cancels).
    x = np.arange(0, smax(cfg.input_bits) + 1)
    diff = g.gelu(x, cfg) - g.gelu(-x, cfg)
    assert np.array_equal(diff, x << (cfg.output_frac_bits - cfg.input_frac_bits))


def test_zero_large_positive_large_negative(cfg):
    shift = cfg.output_frac_bits - cfg.input_frac_bits
    assert g.gelu(0, cfg) == 0
    big = np.arange(quantise(cfg.table_range, cfg.input_frac_bits, cfg.input_bits),
                    smax(cfg.input_bits) + 1)
    assert np.array_equal(g.gelu(big, cfg), big << shift)          # plain ReLU: y == x
    assert np.array_equal(g.gelu(-big, cfg), np.zeros_like(big))   # ... and 0 below -range
    # inside the coarse region the small correction is still applied
    x = quantise(cfg.table_range * 2 / 3, cfg.input_frac_bits, cfg.input_bits)
    correction = dequantise((x << shift) - g.gelu(x, cfg), cfg.output_frac_bits)
    assert correction > 0
    assert abs(correction - g.delta_float(dequantise(x, cfg.input_frac_bits))) <= 1e-4


def test_input_extremes(cfg):
    lo, hi = smin(cfg.input_bits), smax(cfg.input_bits)
    assert g.gelu(lo, cfg) == 0
    expected_hi = min(hi << (cfg.output_frac_bits - cfg.input_frac_bits), smax(cfg.output_bits))
    assert g.gelu(hi, cfg) == expected_hi
    with pytest.raises(ValueError):
        g.gelu(hi + 1, cfg)
    with pytest.raises(ValueError):
        g.gelu(lo - 1, cfg)


def test_output_saturates():
    # An output format of [-2, 2): GELU(x) for x >= 2 must clamp to the largest code, not wrap.
    ge = config.load("tiny").replace({"hardware.gelu.output_bits": 17}).hardware.gelu
    x = np.arange(smax(ge.input_bits) - 4096, smax(ge.input_bits) + 1)
    assert np.all(g.gelu(x, ge) == smax(17))
    x_q, err = _err_grid(ge)
    inside = np.abs(dequantise(x_q, ge.input_frac_bits)) < 1.9
    assert np.max(np.abs(err[inside])) <= g.TARGET_MAX_ABS_ERR


def test_accepts_whole_design_config():
    design = config.load("tiny")
    x = np.arange(-300, 300).reshape(20, 30)
    assert np.array_equal(g.gelu(x, design), g.gelu(x, design.hardware.gelu))
    assert g.gelu(x, design).shape == (20, 30)


def test_float_wrapper(cfg):
    rng = np.random.default_rng(7)
    x = rng.uniform(-10, 10, 5000)
    y = g.gelu_quantised_float(x, cfg)
    x_q = quantise(x, cfg.input_frac_bits, cfg.input_bits)
    assert np.array_equal(y, dequantise(g.gelu(x_q, cfg), cfg.output_frac_bits))
    # input rounding (half an LSB) times max |GELU'| (1.13) plus the unit's error
    bound = g.TARGET_MAX_ABS_ERR + 1.13 * 2.0 ** -(cfg.input_frac_bits + 1)
    assert np.max(np.abs(y - g.gelu_float(x))) <= bound


def test_segments_partition_the_table_range(cfg):
    seg = g.segmentation(cfg)
    h = cfg.table_range / (1.5 * cfg.table_entries)
    u = np.arange(0, seg.table_end + 3 * 2**cfg.input_frac_bits)
    index, f, in_table = g.index_and_position(u, seg)
    ux = dequantise(u, cfg.input_frac_bits)
    assert np.array_equal(in_table, ux < cfg.table_range)
    # independent float description: fine width h below range/3, width 2h above
    fine = ux < cfg.table_range / 3
    start = np.where(fine, np.floor(ux / h) * h,
                     cfg.table_range / 3 + np.floor((ux - cfg.table_range / 3) / (2 * h)) * 2 * h)
    width = np.where(fine, h, 2 * h)
    exp_index = np.where(fine, np.round(start / h),
                         cfg.table_entries / 2 + np.round((start - cfg.table_range / 3) / (2 * h)))
    t = f / 2.0**seg.pos_bits
    assert np.array_equal(index[in_table], exp_index[in_table].astype(np.int64))
    assert np.allclose(t[in_table], ((ux - start) / width)[in_table], atol=0)
    assert index.max() == cfg.table_entries - 1


def test_table_shape_widths_and_derivation(cfg):
    table = g.gelu_table(cfg)
    assert table.shape == (cfg.table_entries, 2) and cfg.table_entries <= g.MAX_TABLE_ENTRIES
    a_bits, c_bits = g.table_field_bits(cfg)
    assert np.all(table[:, 0] >= -(1 << (a_bits - 1))) and np.all(table[:, 0] < 1 << (a_bits - 1))
    assert np.all(table[:, 1] >= -(1 << (c_bits - 1))) and np.all(table[:, 1] < 1 << (c_bits - 1))
    # a is delta at the segment start (within the fit's error), in table_frac_bits
    seg = g.segmentation(cfg)
    starts = np.array([g._segment_inputs(seg, i)[0] for i in range(cfg.table_entries)])
    d = g.delta_float(dequantise(starts, cfg.input_frac_bits))
    assert np.max(np.abs(dequantise(table[:, 0], cfg.table_frac_bits) - d)) < 1e-4


def test_table_follows_config():
    base = config.load("tiny")
    finer = base.replace({"hardware.gelu.table_entries": 256}).hardware.gelu   # h = 1/64
    coarser = base.replace({"hardware.gelu.table_entries": 64}).hardware.gelu  # h = 1/16
    assert g.gelu_table(finer).shape == (256, 2)
    e_fine, e_base, e_coarse = (g.max_abs_error(c) for c in (finer, base.hardware.gelu, coarser))
    assert e_fine < e_base < e_coarse
    assert e_coarse > g.TARGET_MAX_ABS_ERR  # 64 segments are not enough: the bound can fail
