"""``moeaccel sim`` and ``moeaccel sweep`` end to end, and every sweep-file mistake."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from moeaccel.cli import main
from moeaccel.errors import UserError
from sim import sweep

ROOT = Path(__file__).parents[2]
EXAMPLE_SWEEP = ROOT / "sim" / "examples" / "sweep.yaml"


def test_sim_json_reports_everything(capsys):
    assert main(["sim", "--config", "m3vit-tiny", "--workload", "m3vit-tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("total_cycles", "latency_ms", "tokens_per_s", "inferences_per_s",
                "mac_utilisation", "busy_cycles", "dram_bytes", "dram_stall_cycles",
                "tokens_dropped", "energy_uj"):
        assert key in out
    assert set(out["busy_cycles"]) == {"compute_unit", "softmax", "gelu", "router", "gather",
                                       "scatter", "dram"}
    assert set(out["dram_bytes"]) == {"weights", "activations"}
    assert set(out["energy_uj"]) == {"mac", "buffers", "dram", "static", "total"}
    assert out["latency_ms"] == pytest.approx(out["total_cycles"] / 300e3)


def test_sim_text_report_and_trace_export(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    assert main(["sim", "--config", "tiny", "--workload", "zipf", "--save-trace", str(trace)]) == 0
    text = capsys.readouterr().out
    assert "total cycles" in text and "busy cycles per block" in text and "static" in text
    assert main(["sim", "--config", "tiny", "--workload", str(trace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["workload"] == "t"


@pytest.mark.parametrize("argv, message", [
    (["sim", "--workload", "nope"], "error: nope: no such workload"),
    (["sim", "--config", "nope"], "error: nope: no such preset or file"),
    (["sim", "--config", "m3vit-tiny", "--workload", "sim/workloads/examples/tiny-trace.jsonl"],
     "header tokens is 16 but the config m3vit-tiny has 129"),
])
def test_cli_errors_are_one_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "moeaccel", *argv], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def _sweep_file(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


SMALL = """config: tiny
workload: zipf
params:
  array: [2, "4x2"]
  dram_bytes_per_cycle: [1, 4]
  skew: [0.0, 2.0]
  capacity_factor: [null, 1.0]
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_small_sweep_writes_csv_and_plots(tmp_path, jobs):
    out = tmp_path / "out"
    files = sweep.sweep_to_dir(_sweep_file(tmp_path, SMALL), out, jobs=jobs, progress=False)
    names = {f.name for f in files}
    assert {"results.csv", "vs_array.png", "vs_skew.png", "energy_breakdown.png",
            "roofline.png", "expert_load.png"} <= names
    assert all(f.stat().st_size > 0 for f in files)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 16
    assert {r["array"] for r in rows} == {"2", "4x2"}
    # the points really differ: 1 byte/cycle is slower than 4 for the same other parameters
    by = {(r["array"], r["skew"], r["capacity_factor"], r["dram_bytes_per_cycle"]):
          int(r["total_cycles"]) for r in rows}
    for (a, s, c, bw), cycles in by.items():
        if bw == "1":
            assert cycles >= by[(a, s, c, "4")]
    dropped = [int(r["tokens_dropped"]) for r in rows if r["capacity_factor"] == "null"]
    assert dropped == [0] * 8


def test_parallel_and_serial_sweeps_agree(tmp_path):
    s = sweep.load(_sweep_file(tmp_path, SMALL))
    assert sweep.run(s, jobs=1, progress=False) == sweep.run(s, jobs=2, progress=False)


def test_example_sweep_runs(tmp_path):
    s = sweep.load(EXAMPLE_SWEEP)
    assert 100 <= len(s.points()) <= 400
    assert main(["sweep", str(EXAMPLE_SWEEP), "--out", str(tmp_path), "--jobs", "2"]) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == len(s.points())
    assert (tmp_path / "roofline.png").exists()


@pytest.mark.parametrize("text, message", [
    ("params: {arrray: [8]}\n", r"s\.yaml: params\.arrray: unknown parameter"),
    ("params: {array: 8}\n", r"s\.yaml: params\.array: must be a non-empty list"),
    ("params: {array: []}\n", r"s\.yaml: params\.array: must be a non-empty list"),
    ("params: {workload.nope: [1]}\n", r"params\.workload\.nope: unknown parameter"),
    ("config: tiny\nparams: {array: [64]}\n",
     r"point \(array=64\): hardware\.compute_unit\.rows: 64 rows exceed the 16 tokens"),
    ("config: tiny\nparams: {clock_mhz: [100, fast]}\n",
     r"point \(clock_mhz=fast\): hardware\.clock_mhz: expected a number"),
    ("config: tiny\nparams: {hardware.dram.nope: [1]}\n", r"hardware\.dram\.nope: unknown key"),
    ("config: tiny\nparams: {skew: [-1]}\n", r"point \(skew=-1\): workload m3vit-tiny: s: must be >= 0"),
    ("config: tiny\nparams: {array: ['4xq']}\n", r"params\.array: array sizes are N or 'ROWSxCOLS'"),
    ("config: tiny\nworkload: nope\nparams: {array: [4]}\n", r"nope: no such workload"),
    ("params: [1, 2]\n", r"s\.yaml: params: must map parameter names to lists"),
    ("cross: {array: [8]}\n", r"s\.yaml: cross: unknown key"),
    ("params: {array: [8\n", r"s\.yaml:\d+: not valid YAML"),
])
def test_bad_sweep_is_one_line_naming_the_key(tmp_path, text, message):
    text = text if text.startswith(("config", "params: {array: [8\n")) else "config: m3vit-tiny\n" + text
    with pytest.raises(UserError, match=message) as info:
        sweep.load(_sweep_file(tmp_path, text))
    assert "\n" not in str(info.value)
