"""Golden MoE layer: schedule, gather/scatter equivalence, capacity, null and shared experts,
tasks, and accuracy against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

from golden import moe
from golden.linear import scatter_finalise
from moeaccel import config

PRESETS = ["tiny", "m3vit-tiny", "mixtral-layer", "deepseek-layer"]


def tiny(**model) -> config.DesignConfig:
    return config.load("tiny").replace({f"model.{k}": v for k, v in model.items()})


def token_by_token(x_q, layer, cfg, res) -> np.ndarray:
    """The layer computed per token from the routing decisions, without gather/scatter."""
    one = 1 << cfg.hardware.softmax.prob_frac_bits
    acc = np.zeros((x_q.shape[0], cfg.model.embed_dim), dtype=np.int64)
    r = res.routing
    for t in range(x_q.shape[0]):
        row = x_q[t:t + 1]
        for e in layer.shared:
            acc[t] += one * moe.expert_ffn(row, e, cfg)[0]
        for s in np.flatnonzero(r.kept[t]):
            acc[t] += int(r.gates[t, s]) * moe.expert_ffn(row, layer.experts[r.ids[t, s]], cfg)[0]
    return scatter_finalise(acc, cfg)


@pytest.mark.parametrize("model", [
    {},
    {"gating": "topk_softmax"},
    {"capacity_factor": 0.5},
    {"null_experts": 2, "shared_experts": 1},
    {"top_k": 1, "shared_experts": 2},
])
def test_expert_by_expert_equals_token_by_token(model):
    cfg = tiny(**model)
    x_q, layer = moe.random_layer(cfg, seed=11)
    res = moe.moe_layer(x_q, layer, cfg)
    assert np.array_equal(res.out_q, token_by_token(x_q, layer, cfg, res))


def test_schedule_is_shared_then_active_experts_in_order():
    cfg = tiny(shared_experts=2, capacity_factor=0.75)
    x_q, layer = moe.random_layer(cfg, seed=3)
    res = moe.moe_layer(x_q, layer, cfg)
    routed = [e for kind, e in res.order if kind == "routed"]
    assert res.order[:2] == (("shared", 0), ("shared", 1))
    assert tuple(routed) == res.routing.active
    assert routed == sorted(routed) and all(res.counts[e] > 0 for e in routed)
    assert res.counts.sum() + res.dropped == cfg.model.tokens * cfg.model.top_k


def test_capacity_drops_are_counted_and_change_the_output():
    base = tiny()
    capped = tiny(capacity_factor=0.3)
    x_q, layer = moe.random_layer(base, seed=4)
    full = moe.moe_layer(x_q, layer, base)
    cut = moe.moe_layer(x_q, layer, capped)
    cap = capped.model.expert_capacity
    assert full.dropped == 0 and cut.dropped > 0
    assert np.all(cut.counts <= cap)
    assert np.array_equal(cut.counts + cut.routing.dropped, full.counts)
    assert not np.array_equal(cut.out_q, full.out_q)


def test_tokens_that_pick_only_null_experts_get_zero_output():
    cfg = tiny(null_experts=3, top_k=1)
    x_q, layer = moe.random_layer(cfg, seed=5)
    res = moe.moe_layer(x_q, layer, cfg)
    null_only = ~res.routing.kept.any(axis=1)
    assert null_only.any() and (~null_only).any()
    assert res.routing.null_slots == int(null_only.sum())
    assert np.all(res.out_q[null_only] == 0)


def test_tasks_select_their_own_gate_matrix():
    cfg = tiny()
    assert cfg.model.tasks == 2
    x_q, layer = moe.random_layer(cfg, seed=6)
    a = moe.moe_layer(x_q, layer, cfg, task=0)
    b = moe.moe_layer(x_q, layer, cfg, task=1)
    assert not np.array_equal(a.logits_q, b.logits_q)
    with pytest.raises(ValueError, match="task"):
        moe.moe_layer(x_q, layer, cfg, task=2)


def test_random_layer_is_seeded():
    cfg = tiny()
    x1, l1 = moe.random_layer(cfg, seed=8)
    x2, l2 = moe.random_layer(cfg, seed=8)
    x3, _ = moe.random_layer(cfg, seed=9)
    assert np.array_equal(x1, x2) and not np.array_equal(x1, x3)
    assert np.array_equal(moe.moe_layer(x1, l1, cfg).out_q, moe.moe_layer(x2, l2, cfg).out_q)


@pytest.mark.parametrize("preset", PRESETS)
def test_layer_accuracy_against_float(preset):
    acc = moe.accuracy(config.load(preset), seed=0)
    assert acc["moe_layer_rms_err_lsb"] <= moe.TARGET_RMS_LSB
    assert acc["moe_layer_dropped"] == 0


@pytest.mark.parametrize("model", [{"gating": "topk_softmax", "null_experts": 2},
                                   {"shared_experts": 1, "capacity_factor": 1.0}])
def test_layer_accuracy_other_routing(model):
    acc = moe.accuracy(tiny(**model), seed=1)
    assert acc["moe_layer_rms_err_lsb"] <= moe.TARGET_RMS_LSB
