"""Golden router: top-k order and tie rule, queue invariants, capacity, gates, float agreement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import fixed, router
from moeaccel import config

GATINGS = ("softmax_topk", "topk_softmax")


def make_cfg(gating: str = "softmax_topk", **model) -> config.DesignConfig:
    overrides = {"model.gating": gating}
    overrides.update({f"model.{k}": v for k, v in model.items()})
    return config.load("tiny").replace(overrides)


def random_logits_q(cfg, tokens: int, rng: np.random.Generator, spread: int = 1024) -> np.ndarray:
    """Quantised logits with many near-equal values (small integer range forces ties)."""
    sm = cfg.hardware.softmax
    lo, hi = max(fixed.smin(sm.input_bits), -spread), min(fixed.smax(sm.input_bits), spread)
    return rng.integers(lo, hi + 1, size=(tokens, cfg.model.router_outputs))


# ---- top-k -------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=12), st.data())
def test_topk_is_best_first_with_ties_to_lower_index(values, data):
    k = data.draw(st.integers(1, len(values)))
    expected = sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]
    assert router.topk(np.array(values), k).tolist() == expected


@pytest.mark.parametrize("gating", GATINGS)
def test_all_equal_logits_pick_the_lowest_indices(gating):
    cfg = make_cfg(gating)
    ids, _ = router.select(np.full((3, cfg.model.router_outputs), 7), cfg)
    assert ids.tolist() == [list(range(cfg.model.top_k))] * 3


@pytest.mark.parametrize("gating", GATINGS)
def test_extreme_logits(gating):
    cfg = make_cfg(gating)
    sm = cfg.hardware.softmax
    r = cfg.model.router_outputs
    logits = np.full((2, r), fixed.smin(sm.input_bits))
    logits[0, r - 1] = fixed.smax(sm.input_bits)
    logits[1, 1] = fixed.smax(sm.input_bits)
    ids, gates = router.select(logits, cfg)
    assert ids[0, 0] == r - 1 and ids[1, 0] == 1
    one = 1 << sm.prob_frac_bits
    assert abs(int(gates[0, 0]) - one) <= 2
    # the remaining slots tie at the minimum and go to the lowest indices
    assert ids[0, 1] == 0 and ids[1, 1] == 0


# ---- gates -------------------------------------------------------------------------------------
@pytest.mark.parametrize("gating", GATINGS)
def test_gates_follow_the_softmax(gating):
    cfg = make_cfg(gating)
    rng = np.random.default_rng(1)
    logits = random_logits_q(cfg, 500, rng)
    ids, gates = router.select(logits, cfg)
    probs = router.softmax(logits if gating == "softmax_topk"
                           else np.take_along_axis(logits, ids, axis=-1), cfg.hardware.softmax)
    probs = fixed.as_int(probs.probs_q)
    expect = np.take_along_axis(probs, ids, axis=-1) if gating == "softmax_topk" else probs
    assert np.array_equal(gates, expect)
    # gates are non-increasing along the slots for both styles
    assert np.all(np.diff(gates, axis=-1) <= 0)


def test_topk_softmax_gates_sum_to_one():
    cfg = make_cfg("topk_softmax")
    sm = cfg.hardware.softmax
    rng = np.random.default_rng(2)
    _, gates = router.select(random_logits_q(cfg, 2000, rng, spread=4096), cfg)
    total = fixed.dequantise(gates.sum(axis=-1), sm.prob_frac_bits)
    bound = 1e-3 * cfg.model.top_k
    assert np.max(np.abs(total - 1.0)) <= bound


# ---- queues ------------------------------------------------------------------------------------
def check_queue_invariants(routing: router.Routing, cfg) -> None:
    m = cfg.model
    tokens = routing.ids.shape[0]
    cap = m.expert_capacity
    # every slot is queued, dropped or null
    assert routing.counts.sum() + routing.dropped_total + routing.null_slots == tokens * m.top_k
    assert routing.null_slots == int((routing.ids >= m.experts).sum())
    for q in routing.queues:
        assert len(q) <= cap
        assert np.all(np.diff(q.tokens) > 0), "queue order must be token order"
        chose = [t for t in range(tokens) if q.expert in routing.ids[t]]
        assert q.tokens.tolist() == chose[:cap], "first tokens in token order are kept"
        assert routing.dropped[q.expert] == len(chose) - len(q)
        for t, g in zip(q.tokens, q.gates):
            s = int(np.flatnonzero(routing.ids[t] == q.expert)[0])
            assert routing.kept[t, s] and routing.gates[t, s] == g
    # a token appears in exactly the queues of its kept slots
    for t in range(tokens):
        in_queues = sorted(q.expert for q in routing.queues if t in q.tokens)
        assert in_queues == sorted(routing.ids[t][routing.kept[t]].tolist())
    assert routing.active == tuple(e for e in range(m.experts) if routing.counts[e])


@pytest.mark.parametrize("gating", GATINGS)
@pytest.mark.parametrize("capacity_factor", [None, 1.0, 0.5, 0.01])
@pytest.mark.parametrize("null_experts", [0, 2])
def test_queue_invariants(gating, capacity_factor, null_experts):
    cfg = make_cfg(gating, capacity_factor=capacity_factor, null_experts=null_experts)
    rng = np.random.default_rng(3)
    routing = router.route(random_logits_q(cfg, cfg.model.tokens, rng, spread=64), cfg)
    check_queue_invariants(routing, cfg)
    if capacity_factor is None:
        assert routing.dropped_total == 0


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(GATINGS), st.sampled_from([None, 0.25, 0.75, 2.0]),
       st.integers(0, 3), st.integers(1, 3), st.integers(0, 2**31))
def test_queue_invariants_random_configs(gating, capacity_factor, null_experts, top_k, seed):
    cfg = make_cfg(gating, capacity_factor=capacity_factor, null_experts=null_experts,
                   top_k=top_k)
    rng = np.random.default_rng(seed)
    routing = router.route(random_logits_q(cfg, cfg.model.tokens, rng, spread=8), cfg)
    check_queue_invariants(routing, cfg)


@pytest.mark.parametrize("gating", GATINGS)
def test_one_expert_takes_every_token_and_capacity_drops_the_rest(gating):
    cfg = make_cfg(gating, capacity_factor=1.0)
    m = cfg.model
    logits = np.zeros((m.tokens, m.router_outputs), dtype=np.int64)
    logits[:, 2] = 500
    routing = router.route(logits, cfg)
    cap = m.expert_capacity
    assert cap < m.tokens
    assert routing.queues[2].tokens.tolist() == list(range(cap))
    assert routing.dropped[2] == m.tokens - cap
    # the second slot ties among the rest: lowest index (0) wins and is also capped
    assert routing.dropped[0] == m.tokens - cap
    assert routing.active == (0, 2)
    check_queue_invariants(routing, cfg)


def test_null_experts_reduce_computation():
    cfg = make_cfg("softmax_topk", null_experts=2)
    m = cfg.model
    logits = np.zeros((m.tokens, m.router_outputs), dtype=np.int64)
    logits[:, m.experts] = 800        # every token's best choice is the first null expert
    logits[: m.tokens // 2, 1] = 600  # half the tokens also take routed expert 1
    logits[m.tokens // 2:, m.experts + 1] = 600
    routing = router.route(logits, cfg)
    assert routing.null_slots == m.tokens + m.tokens - m.tokens // 2
    assert routing.active == (1,)
    assert routing.queues[1].tokens.tolist() == list(range(m.tokens // 2))


def test_wrong_shape_is_refused():
    cfg = make_cfg()
    with pytest.raises(ValueError, match="router logits"):
        router.route(np.zeros((4, cfg.model.router_outputs + 1)), cfg)


# ---- float agreement ---------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["tiny", "m3vit-tiny", "mixtral-layer", "deepseek-layer"])
def test_agreement_with_float(preset):
    acc = router.accuracy(config.load(preset), seed=5)
    assert acc["router_topk_agreement"] == 1.0
    assert acc["router_gate_max_abs_err"] < 2e-3
    assert acc["router_near_tie_fraction"] < 0.5


@pytest.mark.parametrize("gating", GATINGS)
def test_agreement_with_float_null_experts(gating):
    acc = router.accuracy(make_cfg(gating, null_experts=3), seed=6)
    assert acc["router_topk_agreement"] == 1.0
