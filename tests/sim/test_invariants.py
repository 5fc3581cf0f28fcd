"""Invariants of whole simulations: conservation, energy accounting, monotonicity."""

from __future__ import annotations

import numpy as np
import pytest

from moeaccel.weight_image import ImageLayout
from sim import energy, queues, workloads
from sim.simulator import prepare, run, simulate

GENERATED = ["uniform", "zipf", "task", "topk", "sticky", "shared-experts", "null-experts",
             "capacity", "m3vit-tiny"]


@pytest.mark.parametrize("name", GENERATED)
def test_tokens_are_conserved(m3vit, name):
    cfg, wl = prepare(m3vit, name)
    r = simulate(cfg, wl)
    moe = [l for l in wl.layers if l in cfg.model.moe_layers]
    slots = cfg.model.tokens * cfg.model.top_k * len(moe) * wl.inferences
    assert r.routing["kept"] + r.routing["dropped"] + r.routing["null"] == slots
    assert sum(map(sum, r.expert_tokens.values())) * wl.inferences == r.routing["kept"]


def test_capacity_drops_exactly_the_overflow(m3vit):
    cfg = m3vit.replace({"model.capacity_factor": 1.0})
    cap = cfg.model.expert_capacity
    assert cap == 17  # ceil(1.0 * 129 * 2 / 16)
    experts = np.array([[0, 1]] * 100 + [[2, 3]] * 29)
    q = queues.fill(cfg, experts)
    assert q.kept.tolist()[:4] == [cap, cap, cap, cap]
    assert q.dropped == 2 * (100 - cap) + 2 * (29 - cap)


def test_null_experts_compute_nothing(m3vit):
    cfg = m3vit.replace({"model.null_experts": 2})
    experts = np.full((129, 2), -1)
    q = queues.fill(cfg, experts)
    assert q.null == 258 and q.kept.sum() == 0


@pytest.mark.parametrize("name", ["m3vit-tiny", "capacity"])
def test_energy_is_the_sum_of_its_parts(m3vit, name):
    r = run(m3vit, name)
    e = r.energy_uj
    assert e["total"] == pytest.approx(e["mac"] + e["buffers"] + e["dram"] + e["static"], rel=1e-12)
    assert r.energy_per_inference_uj == pytest.approx(e["total"] / r.inferences)
    assert min(e.values()) > 0


def test_energy_parts_follow_the_table(m3vit):
    scaled = m3vit.replace({"energy.fpga_scale": 10.0})
    a, b = run(m3vit, "m3vit-tiny").energy_uj, run(scaled, "m3vit-tiny").energy_uj
    assert b["mac"] == pytest.approx(10 * a["mac"])
    assert b["buffers"] == pytest.approx(10 * a["buffers"])
    assert b["dram"] == pytest.approx(a["dram"]) and b["static"] == pytest.approx(a["static"])
    e = energy.account(m3vit, macs=10, sram_read_bytes=0, sram_write_bytes=0, dram_bytes=8,
                       cycles=300)
    assert e.mac == pytest.approx(10 * m3vit.energy.mac_int8_pj)
    assert e.dram == pytest.approx(8 * m3vit.energy.dram_pj_per_byte)
    assert e.static == pytest.approx(m3vit.energy.static_mw * 1e-3 * 1e-6 * 1e12)  # 1 µs


@pytest.mark.parametrize("name", ["m3vit-tiny", "zipf", "shared-experts"])
@pytest.mark.parametrize("double", [True, False])
def test_more_bandwidth_is_never_slower(m3vit, name, double):
    cycles = []
    for bpc in (0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 1024):
        cfg = m3vit.replace({"hardware.dram.bytes_per_cycle": bpc,
                             "hardware.buffers.double_buffered": double})
        cycles.append(run(cfg, name).total_cycles)
    assert all(a >= b for a, b in zip(cycles, cycles[1:])), cycles


def test_less_dram_latency_is_never_slower(m3vit):
    cycles = [run(m3vit.replace({"hardware.dram.latency_cycles": lat}), "zipf").total_cycles
              for lat in (512, 256, 64, 8, 0)]
    assert all(a >= b for a, b in zip(cycles, cycles[1:])), cycles


def test_double_buffering_hides_weight_fetches(m3vit):
    single = m3vit.replace({"hardware.buffers.double_buffered": False})
    assert run(m3vit, "m3vit-tiny").dram_stall_cycles < run(single, "m3vit-tiny").dram_stall_cycles / 4


def test_skipping_idle_experts_saves_weight_traffic(m3vit):
    # Every token of every layer picks experts 0 and 1 (sticky 1.0 copies token 0's choice).
    cfg, wl = prepare(m3vit, workloads.load("uniform").replace(sticky=1.0))
    r = simulate(cfg, wl)
    full = run(m3vit, "uniform")
    # an expert's weights are its two weight_image blocks (the engine fetches whole blocks)
    per_expert = ImageLayout.of(cfg).expert_bytes
    assert full.dram_bytes["weights"] - r.dram_bytes["weights"] == 14 * 6 * per_expert


def test_clock_scales_time_not_cycles(m3vit):
    a = run(m3vit, "m3vit-tiny")
    b = run(m3vit.replace({"hardware.clock_mhz": 150.0}), "m3vit-tiny")
    assert a.total_cycles == b.total_cycles
    assert b.latency_ms == pytest.approx(2 * a.latency_ms)
    assert a.latency_ms == pytest.approx(a.total_cycles / 300e3)
    assert a.tokens_per_s == pytest.approx(129 / (a.latency_ms / 1e3))


def test_mac_utilisation_is_macs_over_array_capacity(m3vit):
    r = run(m3vit, "m3vit-tiny")
    assert r.mac_utilisation == pytest.approx(r.macs / (256 * r.total_cycles))
    assert 0 < r.mac_utilisation <= 1
    assert r.busy_cycles["compute_unit"] <= r.total_cycles
