"""fpga/logic_depth.py on hand-made netlists: path delays add up per cell, carry chains are cheap,
wide fan-out costs, and the worst path per (start, end) pair is reported."""

from __future__ import annotations

import math

import pytest

from fpga import logic_depth as ld


def _cell(kind: str, inputs: dict[str, list[int]], outputs: dict[str, list[int]]) -> dict:
    return {"type": kind, "connections": {**inputs, **outputs},
            "port_directions": {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}}}


def _netlist(cells: dict) -> dict:
    return {"modules": {"top": {"attributes": {"top": 1}, "cells": cells}}}


def test_lut_chain_between_registers():
    cells = {
        "a_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [9]}, {"Q": [1]}),
        "l1_LUT4_Z": _cell("LUT4", {"A": [1]}, {"Z": [2]}),
        "l2_LUT4_Z": _cell("LUT4", {"A": [2]}, {"Z": [3]}),
        "b_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [3]}, {"Q": [9]}),
    }
    paths = ld.longest_paths(_netlist(cells))
    ns, start, end, chain = paths[0]
    assert (start, end) == ("a", "b")
    assert ns == pytest.approx(ld.SOURCE_NS["TRELLIS_FF"] + 2 * ld.DELAY_NS["LUT4"])
    assert chain == ["a_TRELLIS_FF_Q", "l1_LUT4_Z", "l2_LUT4_Z", "b_TRELLIS_FF_Q"]


def test_carry_chain_is_fast_and_fanout_costs():
    cells = {"a_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [99]}, {"Q": [1]})}
    prev = [1]
    for i in range(4):                       # a 4-cell carry chain fed on A0 of the first
        cells[f"c{i}_CCU2C_S0"] = _cell("CCU2C", {"A0": [1] if i == 0 else [], "CIN": prev if i else []},
                                        {"COUT": [10 + i]})
        prev = [10 + i]
    cells["s_TRELLIS_FF_Q"] = _cell("TRELLIS_FF", {"DI": prev}, {"Q": [98]})
    ns = ld.longest_paths(_netlist(cells))[0][0]
    assert ns == pytest.approx(ld.SOURCE_NS["TRELLIS_FF"] + ld.DELAY_NS["CCU2C"] + 3 * ld.CARRY_NS)

    # one LUT driving 64 register enables pays log2(64) fan-out steps
    wide = {"a_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [99]}, {"Q": [1]}),
            "en_LUT4_Z": _cell("LUT4", {"A": [1]}, {"Z": [2]})}
    for i in range(64):
        wide[f"r_{i}_TRELLIS_FF_Q"] = _cell("TRELLIS_FF", {"DI": [1], "CE": [2]}, {"Q": [200 + i]})
    ns, _, end, _ = ld.longest_paths(_netlist(wide))[0]
    assert end == "r"
    assert ns == pytest.approx(ld.SOURCE_NS["TRELLIS_FF"] + ld.DELAY_NS["LUT4"]
                               + ld.FANOUT_NS * math.log2(64) + ld.FANOUT_NS * math.log2(65))


@pytest.mark.parametrize("regmode, source_ns", [("NOREG", ld.SOURCE_NS["DP16KD"]),
                                                ("OUTREG", ld.DP16KD_OUTREG_NS)])
def test_block_ram_output_register_starts_paths_early(regmode, source_ns):
    ram = _cell("DP16KD", {"ADB0": [9]}, {"DOB0": [1]})
    ram["parameters"] = {"REGMODE_B": regmode}
    cells = {"ram": ram, "l_LUT4_Z": _cell("LUT4", {"A": [1]}, {"Z": [2]}),
             "b_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [2]}, {"Q": [9]})}
    ns = ld.longest_paths(_netlist(cells))[0][0]
    assert ns == pytest.approx(source_ns + ld.DELAY_NS["LUT4"])


def _dsp(registers: dict[str, str]) -> dict:
    dsp = _cell("MULT18X18D", {"A0": [2], "B0": [3]}, {"P0": [4]})
    dsp["parameters"] = registers
    return dsp


def test_unregistered_dsp_is_combinational():
    cells = {"a_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [9]}, {"Q": [1]}),
             "l_LUT4_Z": _cell("LUT4", {"A": [1]}, {"Z": [2]}),
             "m_MULT18X18D_P0": _dsp({}),
             "p_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [4]}, {"Q": [9]})}
    ns, start, end, _ = ld.longest_paths(_netlist(cells))[0]
    assert (start, end) == ("a", "p")
    assert ns == pytest.approx(ld.SOURCE_NS["TRELLIS_FF"] + ld.DELAY_NS["LUT4"]
                               + ld.DELAY_NS["MULT18X18D"])


@pytest.mark.parametrize("output, source_ns", [("NONE", ld.DSP_INREG_NS),
                                               ("CLK0", ld.DSP_OUTREG_NS)])
def test_registered_dsp_ends_and_starts_paths(output, source_ns):
    regs = {"REG_INPUTA_CLK": "CLK0", "REG_INPUTB_CLK": "CLK0", "REG_OUTPUT_CLK": output}
    cells = {"a_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [9]}, {"Q": [1]}),
             "l_LUT4_Z": _cell("LUT4", {"A": [1]}, {"Z": [2]}),
             "m_MULT18X18D_P0": _dsp(regs),
             "o_LUT4_Z": _cell("LUT4", {"A": [4]}, {"Z": [5]}),
             "p_TRELLIS_FF_Q": _cell("TRELLIS_FF", {"DI": [5]}, {"Q": [9]})}
    paths = {(s, e): ns for ns, s, e, _ in ld.longest_paths(_netlist(cells))}
    assert paths[("a", "m")] == pytest.approx(ld.SOURCE_NS["TRELLIS_FF"] + ld.DELAY_NS["LUT4"]
                                              + ld.DSP_INPUT_ROUTE_NS)
    assert paths[("m", "p")] == pytest.approx(source_ns + ld.DELAY_NS["LUT4"])
