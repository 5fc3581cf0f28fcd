"""The simulator's MoE layer follows the MoE engine's rules (``hw/moe_engine.py``; measured
against the RTL cycle for cycle by ``moeaccel validate``'s engine cases), and stays
Amaranth-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from moeaccel.weight_image import ImageLayout, buffer_slots
from moeaccel import config
from sim import buffers, queues, schedule, timeline
from sim.timing import compute_unit, logit_serialiser, moe_controller, weight_stream


def test_sim_does_not_import_amaranth():
    code = ("import sys, sim.simulator, sim.sweep, sim.schedule, sim.buffers; "
            "from sim.timing import logit_serialiser, moe_controller, queue_store, weight_fetch; "
            "sys.exit('amaranth' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("name", ["tiny", "m3vit-tiny", "m3vit-small", "ulx3s"])
def test_one_weight_slot_rule_for_sim_and_hw(name):
    cfg = config.load(name)
    assert buffers.engine_slots(cfg) == buffer_slots(cfg)


def test_m3vit_tiny_double_buffers_its_expert_weights(m3vit):
    assert buffers.engine_slots(m3vit) == 2
    assert buffers.engine_slots(m3vit.replace({"hardware.buffers.weight_bytes": 96 * 1024})) == 1


def test_serialiser_rows_end_with_the_gemm(m3vit):
    for m, k in ((129, 192), (16, 32), (5, 7)):
        rows = logit_serialiser.row_cycles(m3vit, m, k)
        assert len(rows) == m and rows == sorted(rows)
        assert rows[-1] == compute_unit.gemm_cycles(m3vit, m, k, 16) - 1


def _layer(cfg, experts):
    b = schedule.ScheduleBuilder(cfg)
    b.moe(1, queues.fill(cfg, np.asarray(experts)))
    return b.steps, timeline.play(cfg, b.steps)


def test_one_slot_serialises_fetch_and_compute(m3vit):
    """With one slot a matrix is fetched only after the previous one was streamed: slower, and
    the fetch of every expert matrix waits."""
    experts = [[0, 1]] * 129
    single = m3vit.replace({"hardware.buffers.weight_bytes": 96 * 1024})
    _, double_tl = _layer(m3vit, experts)
    _, single_tl = _layer(single, experts)
    assert single_tl.total_cycles > double_tl.total_cycles
    assert single_tl.weight_wait_cycles > double_tl.weight_wait_cycles


def test_whole_blocks_are_fetched_once(m3vit):
    steps, tl = _layer(m3vit, [[2, 7]] * 129)
    img = ImageLayout.of(m3vit)
    assert [s.weight_bytes for s in steps if s.weight_bytes] == [
        img.gate.bytes, img.w1.bytes, img.w2.bytes, img.w1.bytes, img.w2.bytes]
    assert tl.fetches == 5
    assert all(s.gap == moe_controller.GEMM_GAP for s in steps if s.weight_bytes)


@pytest.mark.parametrize("preset", config.presets())
def test_weight_read_stages_hide_behind_the_gather(preset):
    """The schedule has no term for the weight stream's read stages: true while the first weight
    beat is valid no later than the first gathered activation (the RTL tests measure it)."""
    cfg = config.load(preset)
    assert weight_stream.hidden_behind_gather(cfg), (
        f"{preset}: first weight beat in cycle {weight_stream.latency(cfg)}, after the gather's")
