"""Routing generators, workload specs and trace files (including every way a trace can be bad)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moeaccel import config
from moeaccel.errors import UserError
from sim import workloads
from sim.workloads import generators, traces

EXAMPLES = Path(__file__).parents[2] / "sim" / "workloads" / "examples"


def routing(cfg, name, **changes):
    spec = workloads.load(name)
    if changes:
        spec = spec.replace(**changes)
    cfg = spec.apply(cfg)
    return cfg, workloads.build(cfg, spec)


@pytest.mark.parametrize("name", sorted(workloads.builtins()))
def test_every_builtin_routes_k_distinct_valid_experts(m3vit, tiny, name):
    # golden routing calibrates a random model: seconds on tiny, ~30 s on m3vit-tiny
    cfg, wl = routing(tiny if name == "golden" else m3vit, name)
    for layers in wl.routing:
        for experts, gates in layers.values():
            assert experts.shape == gates.shape == (cfg.model.tokens, cfg.model.top_k)
            assert experts.min() >= -1 and experts.max() < cfg.model.experts
            real = [row[row >= 0] for row in experts]
            assert all(len(set(r.tolist())) == len(r) for r in real)
            assert np.all(gates >= 0) and np.all(gates <= 1 + 1e-6)


def test_same_seed_same_routing_other_seed_other_routing(m3vit):
    a = routing(m3vit, "zipf")[1].routing[0][1][0]
    b = routing(m3vit, "zipf")[1].routing[0][1][0]
    c = routing(m3vit, "zipf", seed=1)[1].routing[0][1][0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _max_load(cfg, name, **changes):
    cfg, wl = routing(cfg, name, **changes)
    return np.mean([np.bincount(e[e >= 0], minlength=cfg.model.experts).max()
                    for e, _ in wl.routing[0].values()])


def test_zipf_skew_concentrates_load(m3vit):
    loads = [_max_load(m3vit, "zipf", s=s) for s in (0.0, 1.0, 2.0)]
    assert loads[0] < loads[1] < loads[2]


def test_sticky_tokens_repeat_their_predecessor(m3vit):
    def repeats(sticky):
        _, wl = routing(m3vit, "uniform", sticky=sticky)
        e = wl.routing[0][1][0]
        return np.mean(np.all(e[1:] == e[:-1], axis=1))
    assert repeats(0.0) < 0.1 and repeats(0.8) > 0.7


def test_task_level_gating_gives_each_task_its_experts(m3vit):
    _, wl = routing(m3vit, "task", inferences=2, s=2.0)
    tops = []
    for inference in wl.routing:            # inference 0 runs task 0, inference 1 task 1
        e = inference[1][0]
        tops.append(int(np.bincount(e[e >= 0], minlength=16).argmax()))
    assert tops[0] != tops[1]


def test_gating_styles(m3vit):
    logits = np.array([[3.0, 1.0, 0.0, 2.0] + [0.0] * 12])
    e, g = generators.route(m3vit, logits)                         # softmax_topk, not renormalised
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert e.tolist() == [[0, 3]] and np.allclose(g, [[p[0], p[3]]])
    e, g = generators.route(m3vit.replace({"model.gating": "topk_softmax"}), logits)
    assert e.tolist() == [[0, 3]] and np.allclose(g, [[1 / (1 + np.exp(-1)), 1 / (1 + np.e)]])


def test_ties_go_to_the_lower_expert(m3vit):
    e, _ = generators.route(m3vit, np.zeros((1, 16)))
    assert e.tolist() == [[0, 1]]


def test_null_experts_become_minus_one(m3vit):
    cfg, wl = routing(m3vit, "null-experts", null_bias=50.0)
    assert all(np.all(e == -1) for e, _ in wl.routing[0].values())


# -- traces ------------------------------------------------------------------------------------
def test_example_trace_loads_and_runs(tiny):
    r = traces.load(EXAMPLES / "tiny-trace.jsonl", tiny)
    assert set(r) == set(tiny.model.moe_layers)
    spec = workloads.load(EXAMPLES / "tiny-trace.yaml")
    assert spec.routing == "trace" and spec.inferences == 2
    wl = workloads.build(tiny, spec)
    assert np.array_equal(wl.routing[1][1][0], r[1][0])


@pytest.mark.parametrize("suffix", [".jsonl", ".npz"])
def test_trace_round_trip(m3vit, tmp_path, suffix):
    cfg, wl = routing(m3vit, "null-experts", null_bias=1.0)
    path = tmp_path / f"t{suffix}"
    traces.save(path, cfg, wl.routing[0])
    back = traces.load(path, cfg)
    for layer, (experts, gates) in wl.routing[0].items():
        # nulls are written as shorter lists: compare as sets of real experts, with their gates
        for t in range(cfg.model.tokens):
            keep = experts[t] >= 0
            got = back[layer][0][t]
            assert sorted(got[got >= 0].tolist()) == sorted(experts[t][keep].tolist())
        got_e, got_g = back[layer]
        assert np.allclose(np.where(got_e >= 0, got_g, 0).sum(1),
                           np.where(experts >= 0, gates, 0).sum(1), atol=1e-5)


def _write_jsonl(path, header, *layers):
    path.write_text("\n".join(json.dumps(x) for x in (header, *layers)) + "\n")
    return path


HEADER = {"format": "moeaccel-trace", "version": 1, "tokens": 16, "experts": 4, "top_k": 2}
GOOD = {"layer": 1, "experts": [[0, 1]] * 16, "gates": [[0.5, 0.25]] * 16}


def _bad(**kw):
    return {**GOOD, **kw}


@pytest.mark.parametrize("header, layer, message", [
    ({**HEADER, "format": "x"}, GOOD, r":1: first line must be the header"),
    ({**HEADER, "tokens": 15}, GOOD, r":1: header tokens is 15 but the config tiny has 16"),
    ({**HEADER, "experts": 8}, GOOD, r":1: header experts is 8"),
    (HEADER, _bad(layer=0), r":2: layer 0 is not an MoE layer of tiny \(MoE layers: \[1\]\)"),
    (HEADER, _bad(layer="1"), r":2: layer must be an integer"),
    (HEADER, _bad(experts=[[0, 9]] * 16), r":2: token 0: expert id 9 outside 0..3"),
    (HEADER, _bad(experts=[[0, 1]] * 15 + [[2, 2]]), r":2: token 15: repeats an expert id"),
    (HEADER, _bad(experts=[[0, 1, 2]] * 16, gates=[[0.1] * 3] * 16), r":2: token 0: 3 experts exceed top_k 2"),
    (HEADER, _bad(gates=[[0.5]] * 16), r":2: token 0: experts and gates must be lists of the same length"),
    (HEADER, _bad(gates=[[0.5, -1.0]] * 16), r":2: token 0: gate weights must be finite and >= 0"),
    (HEADER, _bad(experts=[[0, 1]] * 3), r":2: experts must be a list of 16 lists"),
    (HEADER, {"layer": 1, "experts": []}, r":2: a layer line has exactly the keys layer, experts, gates"),
])
def test_bad_jsonl_trace_is_one_line_naming_file_and_line(tiny, tmp_path, header, layer, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", header, layer)
    with pytest.raises(UserError, match=message) as info:
        traces.load(path, tiny)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_duplicate_layer_and_broken_json(tiny, tmp_path):
    with pytest.raises(UserError, match=r":3: layer 1 appears twice"):
        traces.load(_write_jsonl(tmp_path / "a.jsonl", HEADER, GOOD, GOOD), tiny)
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(HEADER) + "\n{not json\n")
    with pytest.raises(UserError, match=r"b\.jsonl:2: not valid JSON"):
        traces.load(path, tiny)


def test_trace_missing_a_layer_the_workload_runs(m3vit, tmp_path):
    cfg, wl = routing(m3vit, "uniform")
    path = tmp_path / "part.jsonl"
    traces.save(path, cfg, {1: wl.routing[0][1]})
    with pytest.raises(UserError, match=r"no routing for MoE layer\(s\) \[3, 5, 7, 9, 11\]"):
        workloads.build(m3vit, workloads.load(path))
    one = workloads.load(path).replace(scope="layer")  # one-layer scope only needs layer 1
    assert workloads.build(m3vit, one).layers == (1,)


def test_bad_npz_trace(tiny, tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, layers=np.array([1]), experts=np.zeros((1, 16, 3), dtype=np.int32),
             gates=np.zeros((1, 16, 3)))
    with pytest.raises(UserError, match=r"bad\.npz: experts: must be an integer array of shape \(1, 16, 2\)"):
        traces.load(path, tiny)
    np.savez(path, layers=np.array([1]))
    with pytest.raises(UserError, match=r"missing array 'experts'"):
        traces.load(path, tiny)
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"not a readable NPZ archive"):
        traces.load(path, tiny)


# -- workload specs ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("routing: zipff\n", r"w\.yaml: routing: must be one of uniform, zipf, task, topk, golden, trace, got 'zipff'"),
    ("skew: 1\n", r"w\.yaml: skew: unknown workload key"),
    ("sticky: 2\n", r"w\.yaml: sticky: must be in \[0, 1\]"),
    ("s: [1]\n", r"w\.yaml: s: wrong type list"),
    ("base: nope\n", r"w\.yaml: base: unknown built-in workload 'nope'"),
    ("routing: [\n", r"w\.yaml:\d+: not valid YAML"),
])
def test_bad_workload_yaml_is_one_line(tmp_path, text, message):
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        workloads.load(path)
    assert "\n" not in str(info.value)


def test_unknown_workload_name_lists_the_builtins():
    with pytest.raises(UserError, match=r"nope: no such workload \(built-in: m3vit-tiny, "):
        workloads.load("nope")


def test_workload_model_override_errors_name_the_workload(m3vit, tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("model: {top_k: 99}\n")
    with pytest.raises(UserError, match=r"workload w: model\.top_k: top_k \(99\) exceeds"):
        workloads.load(path).apply(m3vit)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_workloads_run(path):
    from sim.simulator import run
    cfg = "tiny" if "tiny" in path.name else "m3vit-tiny"
    r = run(cfg, path)
    assert r.total_cycles > 0 and r.routing["kept"] > 0


def test_golden_routing_is_the_golden_models(tiny):
    from golden import model

    spec = workloads.load("golden").replace(inferences=2)
    wl = workloads.build(tiny, spec)
    x_q, weights = model.random_model(tiny, seed=0)
    for task, inference in enumerate(wl.routing):
        expected = model.model(x_q, weights, tiny, task).trace(tiny)
        for layer, (experts, gates) in inference.items():
            assert np.array_equal(experts, expected[layer][0])
            assert np.array_equal(gates, expected[layer][1])


@pytest.mark.parametrize("capacity_factor", [None, 1.0, 0.5])
def test_queue_counts_equal_the_golden_routers(capacity_factor):
    """sim.queues.fill is a vectorised count of golden.router.build_queues (the definition)."""
    from golden import router as golden_router
    from sim import queues

    cfg = config.load("tiny").replace({"model.capacity_factor": capacity_factor,
                                       "model.null_experts": 1})
    rng = np.random.default_rng(5)
    ids = np.stack([rng.permutation(cfg.model.router_outputs)[:cfg.model.top_k]
                    for _ in range(cfg.model.tokens)])
    golden = golden_router.build_queues(ids, np.ones(ids.shape), cfg)
    sim_ids = np.where(ids >= cfg.model.experts, -1, ids)   # the simulator's null marker
    q = queues.fill(cfg, sim_ids)
    assert q.kept.tolist() == golden.counts.tolist()
    assert q.dropped == golden.dropped_total
    assert q.null == golden.null_slots
