"""A quick estimate of a synthesised ECP5 netlist's longest register-to-register paths, before
place and route (seconds instead of the many minutes nextpnr needs for a large design).

    python -m fpga.logic_depth build/fpga/<dir>/top.json [--top 25]

It walks Yosys' ``synth_ecp5`` JSON netlist: sequential cells (TRELLIS_FF, DP16KD, the write
side of TRELLIS_DPR16X4, a MULT18X18D with its input registers on) start and end paths; LUT4,
PFUMX, L6MUX21, CCU2C, an unregistered MULT18X18D, ALU54B and the distributed-RAM read are
combinational. Each cell costs :data:`DELAY_NS` (logic plus a
typical routed hop on a speed-6 part, fan-out ignored), so the figures rank paths and point at
the logic to pipeline; nextpnr's routed timing is the real number. One line per distinct
(start, end) pair of cell-name prefixes, worst first.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path

#: ns per cell on a path: logic delay plus a typical routing hop (ECP5 speed grade 6)
#: (an unregistered MULT18X18D: 3.9 ns through the DSP plus the long routes into and out of the
#: DSP column, 3.2 + 1.9 ns on the routed ulx3s engine)
DELAY_NS = {"LUT4": 1.2, "PFUMX": 0.3, "L6MUX21": 0.3, "CCU2C": 1.3, "MULT18X18D": 8.0,
            "ALU54B": 3.0, "TRELLIS_DPR16X4": 1.6}
#: extra routing ns per doubling of a net's fan-out (wide enables and selects route slowly)
FANOUT_NS = 0.2
#: extra ns per carry cell when the path arrives on CIN (the fast chain) instead of a LUT input
CARRY_NS = 0.12
#: clock-to-output of sequential sources
SOURCE_NS = {"TRELLIS_FF": 0.5, "DP16KD": 5.8, "TRELLIS_DPR16X4": 0.5}
#: clock-to-output of a DP16KD whose read port has its output register (``REGMODE_B = OUTREG``)
DP16KD_OUTREG_NS = 1.0
#: a MULT18X18D with its input registers on: clock-to-output with and without its output
#: register (then the multiply follows the input registers), and the extra route into the DSP
#: column that a path ending at its inputs pays
DSP_OUTREG_NS, DSP_INREG_NS, DSP_INPUT_ROUTE_NS = 1.5, 5.5, 1.5


def _registered_dsp(cell: dict) -> bool:
    return cell["type"] == "MULT18X18D" and \
        cell.get("parameters", {}).get("REG_INPUTA_CLK", "NONE") != "NONE"


def _source_ns(cell: dict) -> float:
    if cell["type"] == "DP16KD" and cell.get("parameters", {}).get("REGMODE_B") == "OUTREG":
        return DP16KD_OUTREG_NS
    if _registered_dsp(cell):
        registered = cell["parameters"].get("REG_OUTPUT_CLK", "NONE") != "NONE"
        return DSP_OUTREG_NS if registered else DSP_INREG_NS
    return SOURCE_NS[cell["type"]]
SEQUENTIAL_INPUTS = {"TRELLIS_FF": {"DI", "CE", "LSR"}, "DP16KD": None,
                     "TRELLIS_DPR16X4": {"DI", "WAD", "WRE"}}


def _strip(name: str) -> str:
    """The design signal a cell was made from: Yosys appends ``_TRELLIS_FF_Q``, ``_LUT4_Z`` ..."""
    base = re.split(r"_(?:TRELLIS_|LUT4|CCU2C|PFUMX|L6MUX|MULT18|DP16KD|ALU54)", name)[0]
    return re.sub(r"(\.\d+)+$|\[\d+\]|\$\d+|(_\d+)+$", "", base)


def longest_paths(netlist: dict, top: int = 25,
                  per_block: bool = False) -> list[tuple[float, str, str, list[str]]]:
    """``(ns, start, end, cells)`` for the ``top`` worst distinct start/end signal pairs (or,
    with ``per_block``, the worst path ending in each submodule)."""
    module = next(m for m in netlist["modules"].values()
                  if m.get("attributes", {}).get("top") or len(netlist["modules"]) == 1)
    cells = module["cells"]
    drivers: dict[int, tuple[str, str]] = {}
    fanout: dict[int, int] = defaultdict(int)
    for name, c in cells.items():
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "output":
                for b in bits:
                    if isinstance(b, int):
                        drivers[b] = (name, port)
            else:
                for b in bits:
                    if isinstance(b, int):
                        fanout[b] += 1

    def comb_inputs(c: dict) -> list[int]:
        ports = ("RAD",) if c["type"] == "TRELLIS_DPR16X4" else \
            [p for p, d in c["port_directions"].items() if d == "input"]
        return [b for p in ports for b in c["connections"].get(p, []) if isinstance(b, int)]

    def load(n: str) -> float:
        c = cells[n]
        worst = max((fanout[b] for p, bits in c["connections"].items()
                     if c["port_directions"].get(p) == "output" for b in bits
                     if isinstance(b, int)), default=1)
        return FANOUT_NS * math.log2(max(worst, 1))

    # arrival time at each cell's output, in topological order of the combinational cells
    arrival: dict[str, tuple[float, str | None]] = {
        n: (_source_ns(c) + load(n), None) for n, c in cells.items()
        if c["type"] in SOURCE_NS or _registered_dsp(c)}
    comb = [n for n, c in cells.items() if c["type"] in DELAY_NS and n not in arrival]
    preds = {n: {drivers[b][0] for b in comb_inputs(cells[n]) if b in drivers} for n in comb}
    waiting = {n: sum(1 for p in preds[n] if p in preds) for n in comb}
    users: dict[str, list[str]] = defaultdict(list)
    for n in comb:
        for p in preds[n]:
            if p in preds:
                users[p].append(n)
    ready = [n for n in comb if waiting[n] == 0]
    while ready:
        n = ready.pop()
        c = cells[n]
        best, pred = 0.0, None
        for p in preds[n]:
            t = arrival.get(p, (0.0, None))[0]
            if t > best:
                best, pred = t, p
        carry = c["type"] == "CCU2C" and pred is not None and _via_carry(c, drivers, pred)
        arrival[n] = (best + (CARRY_NS if carry else DELAY_NS[c["type"]]) + load(n), pred)
        for u in users[n]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)

    worst: dict[tuple[str, str], tuple[float, list[str]]] = {}
    for name, c in cells.items():
        ends = SEQUENTIAL_INPUTS.get(c["type"], ())
        if _registered_dsp(c):
            ends = {p for p in c["connections"] if p[0] in "AB" and p[1:].isdigit()}
        if ends == ():
            continue
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) != "input" or (ends is not None and port not in ends):
                continue
            for b in bits:
                if not isinstance(b, int) or b not in drivers:
                    continue
                src = drivers[b][0]
                if src not in arrival:
                    continue
                ns = arrival[src][0] + (DSP_INPUT_ROUTE_NS if _registered_dsp(c) else 0.0)
                chain = [src]
                while arrival[chain[-1]][1] is not None:
                    chain.append(arrival[chain[-1]][1])
                end = _strip(name)
                key = ("", end.rsplit(".", 1)[0]) if per_block else (_strip(chain[-1]), end)
                if ns > worst.get(key, (-1.0, []))[0]:
                    worst[key] = (ns, chain[::-1] + [name])
    ranked = sorted(((ns, _strip(ch[0]), _strip(ch[-1]), ch) for (s, e), (ns, ch) in worst.items()),
                    reverse=True)
    return ranked[:top]


def _via_carry(cell: dict, drivers: dict, pred: str) -> bool:
    return any(drivers.get(b, ("",))[0] == pred for b in cell["connections"].get("CIN", [])
               if isinstance(b, int))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("netlist", type=Path, help="Yosys JSON netlist (top.json of a board build)")
    p.add_argument("--top", type=int, default=25, help="paths to list")
    p.add_argument("--per-block", action="store_true",
                   help="the worst path into each submodule instead of per signal pair")
    args = p.parse_args(argv)
    netlist = json.loads(args.netlist.read_text())
    for ns, start, end, chain in longest_paths(netlist, args.top, args.per_block):
        print(f"{ns:6.2f} ns  {1000 / ns:6.1f} MHz  {len(chain) - 1:3d} cells  "
              f"{start}  ->  {end}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
