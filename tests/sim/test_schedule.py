"""Closed-form cross-checks of the schedule and timeline against the blocks' timing functions."""

from __future__ import annotations

import numpy as np
import pytest

from moeaccel import config
from sim import buffers, dram, queues, schedule, timeline
from sim.simulator import run
from moeaccel.weight_image import ImageLayout
from sim.timing import (compute_unit, gelu, moe_controller, queue_store, router, scatter,
                        softmax, weight_fetch)


def one_linear(cfg, m, k, n, **kw):
    b = schedule.ScheduleBuilder(cfg)
    b.linear("gemm", m, k, n, **kw)
    return b.steps


def test_one_gemm_is_first_fetch_plus_gemm_cycles(m3vit):
    m, k, n = 129, 192, 192
    steps = one_linear(m3vit, m, k, n)
    assert len(steps) == 1  # 192x192 int8 + biases fit one 48 KB slot
    tl = timeline.play(m3vit, steps)
    fetch = dram.request_cycles(m3vit, k * n + 4 * n)
    assert tl.total_cycles == fetch + compute_unit.gemm_cycles(m3vit, m, k, n)
    assert tl.stall_cycles == fetch
    assert tl.weight_bytes == k * n + 4 * n


@pytest.mark.parametrize("double", [True, False])
@pytest.mark.parametrize("bytes_per_cycle", [1.0, 16.0, 256.0])
def test_tiled_gemm_matches_the_double_buffer_formula(m3vit, double, bytes_per_cycle):
    # A 192 x 1024 matrix with a slot that holds exactly 256 columns: 4 equal chunks.
    per_col = 192 + 4
    slot = 256 * per_col
    cfg = m3vit.replace({"hardware.buffers.weight_bytes": 2 * slot if double else slot,
                         "hardware.buffers.double_buffered": double,
                         "hardware.dram.bytes_per_cycle": bytes_per_cycle,
                         "hardware.buffers.output_bytes": 1 << 20,  # no activation spill
                         "model.mlp_hidden": 1024})
    assert buffers.column_chunks(cfg, 192, 1024, bias=True) == [256] * 4
    steps = one_linear(cfg, 129, 192, 1024)
    f = dram.request_cycles(cfg, slot)
    g = compute_unit.gemm_cycles(cfg, 129, 192, 256)
    expected = f + g + 3 * max(f, g) if double else 4 * (f + g)
    assert timeline.play(cfg, steps).total_cycles == expected


def test_weight_tile_that_cannot_fit_is_rejected_with_the_key(m3vit):
    cfg = m3vit.replace({"hardware.buffers.weight_bytes": 4096})
    with pytest.raises(config.ConfigError, match=r"hardware\.buffers\.weight_bytes: a 192 x 16"):
        buffers.check(cfg)


def test_gelu_is_fused_in_the_compute_unit(m3vit):
    (step,) = one_linear(m3vit, 129, 192, 192, consumer="gelu")
    cu = compute_unit.gemm_cycles(m3vit, 129, 192, 192)
    lanes = m3vit.replace({"hardware.gelu.lanes": m3vit.hardware.compute_unit.cols})
    assert step.cycles == cu
    assert step.busy == (cu, 0, gelu.cycles(lanes, 129 * 192), 0, 0, 0)


def test_softmax_consumes_the_scores_stream(m3vit):
    b = schedule.ScheduleBuilder(m3vit)
    b.on_chip_gemm("scores", 129, 64, 129, consumer="softmax")
    (step,) = b.steps
    cu = compute_unit.gemm_cycles(m3vit, 129, 64, 129)
    sm = softmax.cycles(m3vit, 129, 129)
    assert step.busy == (cu, sm, 0, 0, 0, 0)
    assert step.cycles == max(cu + softmax.cycles(m3vit, 1, 129), sm)


#: stall cycles of a weight fetch nothing hides, with 1-cycle DRAM requests: the request, the
#: fetcher's command/done cycles and the controller noticing it, less the wait cycle a GEMM
#: spends anyway (the MoE engine's rules, sim.timing.weight_fetch / moe_controller)
EXPOSED_ENGINE_FETCH = (1 + weight_fetch.CMD_CYCLES + weight_fetch.DONE_CYCLES - 1
                        + moe_controller.FETCHED_TO_COMMAND - moe_controller.GEMM_GAP)


def test_moe_layer_with_unlimited_bandwidth_is_the_sum_of_its_blocks(m3vit):
    """The MoE layer as the engine runs it (the RTL's rules, ``hw/moe_engine.py``): every expert
    GEMM is a queue-store-fed gathered GEMM, one wait cycle between GEMMs, the scatter read-out
    after its accumulate pipeline drained; only the gate's and the first routed expert's
    fetches are exposed (plus the model input and output transfers)."""
    cfg = m3vit.replace({"hardware.dram.bytes_per_cycle": 1e9, "hardware.dram.latency_cycles": 0,
                         "hardware.buffers.weight_bytes": 1 << 20})
    experts = np.array([[0, 3]] * 100 + [[5, 3]] * 29)
    q = queues.fill(cfg, experts)
    steps = schedule.build(cfg, [1], {1: q}, attention=False)
    tl = timeline.play(cfg, steps)
    assert tl.stall_cycles == 2 + 2 * EXPOSED_ENGINE_FETCH
    assert tl.total_cycles == sum(s.cycles + s.gap for s in steps) + tl.stall_cycles
    m = cfg.model
    by_label = {s.label: s for s in steps}
    for e, count in ((0, 100), (3, 129), (5, 29)):
        assert by_label[f"L1.expert{e}.w1"].cycles == queue_store.gathered_gemm_cycles(
            cfg, count, m.embed_dim, m.expert_hidden)
        assert by_label[f"L1.expert{e}.w2"].cycles == queue_store.gathered_gemm_cycles(
            cfg, count, m.expert_hidden, m.embed_dim)
    assert by_label["L1.scatter.readout"].cycles == (
        scatter.next_command_after_rows(cfg) - 1 + scatter.readout_cycles(cfg, m.tokens, m.embed_dim))
    assert by_label["L1.router.readout"].cycles >= router.readout_cycles(cfg, 258) + 1
    # Only the three active experts' weights are fetched, once each, plus the gate: whole
    # weight_image blocks (header, padded bias, weights).
    img = ImageLayout.of(cfg)
    assert tl.weight_bytes == 3 * img.expert_bytes + img.gate.bytes
    assert tl.fetches == 7 and tl.fetch_busy_cycles == 7


def test_first_expert_fetch_waits_for_the_router(m3vit):
    experts = np.array([[2, 7]] * 129)
    steps = schedule.build(m3vit, [1], {1: queues.fill(m3vit, experts)}, attention=False)
    gate = next(i for i, s in enumerate(steps) if s.label == "L1.router.readout")
    assert all(s.after == gate for s in steps if ".expert" in s.label)


@pytest.mark.parametrize("bytes_per_cycle", [1e6, 0.02])
def test_compute_and_dram_bound_cases_land_on_the_roofline(m3vit, bytes_per_cycle):
    cfg = m3vit.replace({"hardware.dram.bytes_per_cycle": bytes_per_cycle,
                         "hardware.dram.latency_cycles": 0})
    r = run(cfg, "m3vit-tiny")
    roof = r.roofline
    assert roof["achieved_macs_per_cycle"] <= roof["attainable_macs_per_cycle"] * (1 + 1e-9)
    if roof["bound"] == "dram":
        # DRAM-bound: the channel is busy nearly all the time, so time ~ bytes / bandwidth.
        bytes_moved = r.dram_bytes["weights"] + r.dram_bytes["activations"]
        assert bytes_per_cycle == 0.02
        assert r.total_cycles == pytest.approx(bytes_moved / bytes_per_cycle, rel=0.02)
        assert roof["achieved_macs_per_cycle"] == pytest.approx(roof["attainable_macs_per_cycle"], rel=0.02)
    else:
        # Compute-bound: no stall to speak of; time is the compute pipeline's busy time.
        assert bytes_per_cycle == 1e6
        # 1-cycle requests exposed: model input, first weights, model output, and each MoE
        # layer's first expert fetch (waits for its router; the engine's fetch overheads).
        assert r.dram_stall_cycles <= 3 + EXPOSED_ENGINE_FETCH * len(cfg.model.moe_layers)
        assert roof["achieved_macs_per_cycle"] <= roof["peak_macs_per_cycle"]
        assert r.busy_cycles["compute_unit"] <= r.total_cycles
