"""fpga/sweep.py: the sweep file (default points, every mistake as one line) and the table it
writes, from a captured nextpnr report (the real builds are the documented long command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fpga import sweep
from fpga.build import BlockSynth
from fpga.flow import parse_nextpnr
from moeaccel.errors import UserError

DATA = Path(__file__).parent / "data"


def test_default_sweep_has_three_engine_configurations():
    points = sweep.load(sweep.DEFAULT)
    engines = {p.design().digest() for p in points if p.blocks is None}
    assert len(engines) >= 3
    named = {p.design().name for p in points}
    assert {"tiny", "tiny-1x8", "ulx3s"} <= named


@pytest.mark.parametrize("text, message", [
    ("points: []\n", "points: must be a non-empty list"),
    ("points:\n  - {config: tiny, sett: {}}\n", "points[0].sett: unknown key"),
    ("points:\n  - {blocks: [gelu]}\n", "points[0]: must be a mapping with at least `config`"),
    ("points:\n  - {config: nosuch}\n", "points[0]: "),
    ("points:\n  - {config: tiny, set: {hardware.compute_unit.rowz: 2}}\n",
     "points[0]: hardware.compute_unit.rowz: unknown key"),
    ("points:\n  - {config: tiny, set: {hardware.compute_unit.rows: 0}}\n",
     "points[0]: hardware.compute_unit.rows"),
    ("points:\n  - {config: tiny, blocks: [nosuch]}\n", "unknown block"),
    ("points:\n  - {config: tiny, blocks: []}\n", "points[0].blocks: must be a non-empty list"),
    ("points: [\n", "not valid YAML"),
])
def test_bad_sweep_file_is_one_line_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        sweep.load(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_table_has_a_row_per_point_with_the_measured_figures():
    r = parse_nextpnr("top", "LFE5U-85F", (DATA / "nextpnr_report.json").read_text(),
                      (DATA / "nextpnr.log").read_text())
    r.seconds.update({"synth": 10.0, "pnr": 20.0})
    points = [sweep.Point("tiny"), sweep.Point("ulx3s", blocks=["gelu"])]
    rows = [(p.design(), p.blocks or ["moe_engine"], r) for p in points]
    gelu = BlockSynth("gelu", "ulx3s", 516, 130, 1, 0, 2.0)
    text = sweep.markdown(rows, [gelu], [], "moeaccel fpga --sweep", "2026-11-25")
    table = [line for line in text.splitlines() if line.startswith("| tiny") or
             line.startswith("| ulx3s")]
    assert len(table) == 2
    fmax = r.clocks[0].fmax_mhz
    assert f"| {fmax:.1f} |" in table[0] and "| PASS | 30 |" in table[0]
    assert f"| {r.resources['lut4'].used} (" in table[1]
    assert "budget (10% of the part each): **met** (largest: gelu, 0.62%)" in text


def test_missing_sweep_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"nosuch\.yaml: no such FPGA sweep file$"):
        sweep.load(tmp_path / "nosuch.yaml")
