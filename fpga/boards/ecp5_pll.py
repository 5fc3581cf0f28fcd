"""An ECP5 EHXPLLL that makes the design clock from a board oscillator.

The divider settings come from Project Trellis' own ``ecppll`` (run through YoWASP), so they are
the ones the open toolchain knows to work; results are cached per (input, output) frequency.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth import Instance, Module, Signal

from fpga.tools import tool


@dataclass(frozen=True)
class PllParams:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int
    fout_mhz: float


@functools.lru_cache(maxsize=None)
def pll_params(fin_mhz: float, fout_mhz: float) -> PllParams:
    """EHXPLLL dividers for ``fout_mhz`` from ``fin_mhz`` (as chosen by ``ecppll``)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([tool("yowasp-ecppll"), "-i", f"{fin_mhz:g}", "-o", f"{fout_mhz:g}",
                        "-f", "pll.v"], cwd=tmp, check=True, capture_output=True)
        text = (Path(tmp) / "pll.v").read_text()

    def param(name: str) -> int:
        return int(re.search(rf"\.{name}\((\d+)\)", text).group(1))

    fout = float(re.search(r'FREQUENCY_PIN_CLKOP="([\d.]+)"', text).group(1))
    return PllParams(param("CLKI_DIV"), param("CLKFB_DIV"), param("CLKOP_DIV"),
                     param("CLKOP_CPHASE"), fout)


def ehxplll(m: Module, clk_in, fin_mhz: float, fout_mhz: float) -> tuple[Signal, Signal, PllParams]:
    """Add an EHXPLLL to ``m``; return (output clock, lock, the parameters used)."""
    p = pll_params(fin_mhz, fout_mhz)
    clk_out, locked = Signal(), Signal()
    m.submodules.pll = Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{fin_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{p.fout_mhz:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
        p_CLKOP_CPHASE=p.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
        p_CLKFB_DIV=p.clkfb_div,
        i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out,
        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
        i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
    return clk_out, locked, p
