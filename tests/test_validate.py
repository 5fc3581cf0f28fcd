"""``moeaccel validate``: the Verilated RTL and the simulator agree within 1 % on every case.

Runs the quick (tiny-config) cases: compute-unit GEMMs, softmax rows, router layers of both
gating styles (one with null experts and capacity drops), gather and scatter, and whole MoE
layers on the engine (both gating styles, uniform / Zipf / one-expert / empty-expert routings,
shared experts, capacity overflow) with its performance figures. Models come from the shared
build cache (the engine's builds are ``tests/hw/test_moe_engine.py``'s), so after the hw tests
this costs only the simulations.
"""

from __future__ import annotations

import pytest

from moeaccel import validate


@pytest.fixture(scope="module")
def results() -> list[validate.CaseResult]:
    return validate.run_cases(quick=True)


def test_every_case_within_bound(results):
    out = [r for r in results if not r.within_bound]
    assert not out, "out of bound:\n" + validate.table(out)
    kinds = {r.kind for r in results}
    assert {"gemm", "softmax", "router", "gather", "scatter", "moe_layer"} <= kinds


def test_measurements_are_real(results):
    """The RTL side measured something, and the router's queues agree with the simulator's
    capacity model (same entries kept, same drops) including a case that drops."""
    assert all(r.rtl_cycles > 0 for r in results)
    routers = [r for r in results if r.kind == "router"]
    for r in routers:
        assert r.extra["rtl_entries"] == r.extra["sim_entries"], r
        assert r.extra["rtl_dropped"] == r.extra["sim_dropped"], r
    assert any(r.extra["rtl_dropped"] > 0 for r in routers)


def test_bound_and_table():
    ok = validate.CaseResult("a", "gemm", "tiny", "1x1x1", 1000, 1010, 1.0)
    off = validate.CaseResult("b", "gemm", "tiny", "1x1x1", 1000, 1011, 1.1)
    assert ok.within_bound and not off.within_bound
    text = validate.table([ok, off])
    assert "OUT OF BOUND" in text.splitlines()[3] and "OUT OF BOUND" not in text.splitlines()[2]
    assert validate.to_json([ok])["all_within_bound"] and not validate.to_json([off])["all_within_bound"]


def test_engine_layers_match_the_simulator(results):
    """Every quick engine case within the bound (identical when this was written), and the
    simulator's counterparts of the engine's counters equal to the RTL's."""
    engine = [r for r in results if r.kind == "moe_layer"]
    assert len(engine) >= 7
    out = [r for r in engine if not r.within_bound]
    assert not out, "out of bound:\n" + validate.table(out)
    for r in engine:
        for key in ("ffn_cycles", "ffn_steps", "weight_wait", "dram_busy", "fetches", "experts",
                    "dropped"):
            assert r.extra[f"rtl_{key}"] == r.extra[f"sim_{key}"], (r.name, key, r.extra)
    assert any(r.extra["rtl_dropped"] > 0 for r in engine)          # capacity overflow
    assert {r.name.split("/")[1] for r in engine} == {"wide", "mixed"}   # both gating styles


def test_engine_performance_targets(results):
    """MAC utilisation during the expert FFNs >= 90 % and the prefetch hiding >= 80 % of the
    weight-fetch time with ample DRAM bandwidth, from the RTL's counters."""
    perf = validate.performance(results)
    targeted = [p for p in perf if p["utilisation_target"] is not None]
    assert targeted
    for p in targeted:
        assert p["ffn_mac_utilisation"] >= validate.UTILISATION_TARGET, p
        assert p["prefetch_hidden"] >= validate.HIDING_TARGET, p
    text = validate.performance_table(results)
    assert all(p["case"] in text for p in perf)
    assert validate.to_json(results)["all_targets_met"]
