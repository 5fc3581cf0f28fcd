"""`moeaccel accuracy`: every target of the foundation issue is met, and the JSON has its keys."""

from __future__ import annotations

import json
import subprocess
import sys

from golden import accuracy
from moeaccel import config


def test_every_target_met_on_m3vit_tiny() -> None:
    figures = accuracy.measure(config.load("m3vit-tiny"), seed=0, moe_presets=("tiny", "m3vit-tiny"))
    verdicts = accuracy.check(figures)
    assert set(verdicts) == set(accuracy.TARGETS)
    assert all(verdicts.values()), {k: figures[k] for k, ok in verdicts.items() if not ok}


def test_check_flags_a_missed_target() -> None:
    verdicts = accuracy.check({"softmax_max_abs_err": 1e-3, "moe_layer_rms_err_lsb": {"a": 0.5, "b": 2}})
    assert verdicts == {"softmax_max_abs_err": False, "moe_layer_rms_err_lsb": False}


def test_cli_json_has_the_required_keys() -> None:
    out = subprocess.run([sys.executable, "-m", "moeaccel", "accuracy", "--config", "tiny", "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("softmax_max_abs_err", "gelu_max_abs_err", "gelu_table_entries",
                "router_topk_agreement", "moe_layer_rms_err_lsb"):
        assert key in data
    assert set(data["moe_layer_rms_err_lsb"]) == set(accuracy.MOE_PRESETS)
