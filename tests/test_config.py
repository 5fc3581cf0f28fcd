"""The design config: presets load, overrides work, and every user mistake names its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moeaccel import config
from moeaccel.errors import ConfigError
from sim.timing import compute_unit

REQUIRED_PRESETS = {"m3vit-tiny", "m3vit-small", "mixtral-layer", "deepseek-layer", "ulx3s", "tiny"}


def test_all_required_presets_ship_and_validate() -> None:
    assert REQUIRED_PRESETS <= set(config.presets())
    for name in config.presets():
        cfg = config.load(name)
        assert cfg.name == name


def test_m3vit_tiny_is_the_reference_model() -> None:
    m = config.load("m3vit-tiny").model
    assert (m.tokens, m.embed_dim, m.heads, m.layers) == (129, 192, 3, 12)
    assert m.moe_layers == (1, 3, 5, 7, 9, 11)
    assert (m.experts, m.top_k, m.expert_hidden, m.tasks) == (16, 2, 384, 2)
    assert m.gating == "softmax_topk"
    cu = config.load("m3vit-tiny").hardware.compute_unit
    assert (cu.rows, cu.cols) == (16, 16)


def test_ulx3s_array_fits_the_ecp5_85f_multipliers() -> None:
    cu = config.load("ulx3s").hardware.compute_unit
    assert cu.rows * cu.cols <= 156

def test_ulx3s_output_lanes_keep_the_drain_hidden() -> None:
    """The preset's narrow output pipeline (a row in ``row_cycles`` beats) never stalls the array
    on the model's layers: every reduction is at least the drain's tile period."""
    cfg = config.load("ulx3s")
    cu, m = cfg.hardware.compute_unit, cfg.model
    assert cu.row_cycles > 1
    for k in (m.embed_dim, m.expert_hidden, m.mlp_hidden):
        assert compute_unit.tile_period(cfg, k, cu.rows) == k


def test_base_inherits_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("base: m3vit-tiny\nhardware:\n  compute_unit: {rows: 8}\n")
    cfg = config.load(f)
    assert cfg.name == "mine"
    assert cfg.hardware.compute_unit.rows == 8
    assert cfg.hardware.compute_unit.cols == 16          # inherited
    assert cfg.model == config.load("m3vit-tiny").model  # untouched


def test_replace_and_digest() -> None:
    cfg = config.load("tiny")
    other = cfg.replace({"model.top_k": 1})
    assert other.model.top_k == 1 and cfg.model.top_k == 2
    assert other.digest() != cfg.digest()
    assert config.load("tiny").digest() == cfg.digest()


def test_roundtrip_through_yaml(tmp_path: Path) -> None:
    cfg = config.load("deepseek-layer")
    f = tmp_path / "copy.yaml"
    f.write_text(cfg.to_yaml())
    assert config.load(f) == cfg


def test_expert_capacity() -> None:
    cfg = config.load("tiny")                      # 16 tokens, 4 experts, top-2
    assert cfg.model.expert_capacity == 16         # no limit
    assert cfg.replace({"model.capacity_factor": 1.0}).model.expert_capacity == 8
    assert cfg.replace({"model.capacity_factor": 1.25}).model.expert_capacity == 10


@pytest.mark.parametrize("overrides, key, words", [
    ({"model.top_k": 5}, "model.top_k", "exceeds"),
    ({"hardware.compute_unit.rows": -1}, "hardware.compute_unit.rows", ">= 1"),
    ({"hardware.compute_unit.cols": 64}, "hardware.compute_unit.cols", "exceed"),
    ({"hardware.compute_unit.rows": 17}, "hardware.compute_unit.rows", "exceed"),
    ({"hardware.compute_unit.output_lanes": 3}, "hardware.compute_unit.output_lanes", "divisor"),
    ({"hardware.compute_unit.output_lanes": -2}, "hardware.compute_unit.output_lanes", "divisor"),
    ({"hardware.gelu.table_entries": 100}, "hardware.gelu.table_entries", "power of two"),
    ({"hardware.softmax.exp_table_entries": 0}, "hardware.softmax.exp_table_entries", "power of two"),
    ({"hardware.compute_unit.rounding": "nearest"}, "hardware.compute_unit.rounding", "one of"),
    ({"model.gating": "argmax"}, "model.gating", "one of"),
    ({"model.heads": 5}, "model.heads", "divisible"),
    ({"model.moe_layers": [7]}, "model.moe_layers[0]", "outside"),
    ({"model.capacity_factor": 0}, "model.capacity_factor", "positive"),
    ({"hardware.dram.bytes_per_cycle": -4}, "hardware.dram.bytes_per_cycle", "positive"),
    ({"hardware.buffers.weight_bytes": "lots"}, "hardware.buffers.weight_bytes", "integer"),
    ({"hardware.buffers.double_buffered": 1}, "hardware.buffers.double_buffered", "true or false"),
    ({"model.nonsense": 1}, "model.nonsense", "unknown key"),
])
def test_bad_values_name_the_key(overrides: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load("tiny").replace(overrides)
    assert err.value.where == key
    assert words in err.value.problem


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "typo.yaml"
    f.write_text("base: tiny\nhardware:\n  compute_unit: {rowz: 8}\n")
    with pytest.raises(ConfigError, match=r"hardware\.compute_unit\.rowz: unknown key"):
        config.load(f)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("model:\n  tokens: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        config.load(f)


def test_missing_preset_lists_presets() -> None:
    with pytest.raises(ConfigError, match="no such preset or file.*m3vit-tiny"):
        config.load("m3vit-huge")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moeaccel", *args], capture_output=True, text=True)


def test_cli_config_show_prints_resolved_yaml() -> None:
    out = _cli("config", "show", "m3vit-tiny")
    assert out.returncode == 0, out.stderr
    assert "embed_dim: 192" in out.stdout and "rows: 16" in out.stdout


def test_cli_bad_config_is_one_line_and_nonzero(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("base: tiny\nmodel: {top_k: 9}\n")
    out = _cli("config", "show", str(f))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: model.top_k: top_k (9) exceeds experts + null_experts (4)"]
