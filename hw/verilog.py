"""Verilog generation for the accelerator's blocks.

Every block is a ``wiring.Component`` whose constructor takes the design config only
(``Block(cfg)``); :data:`BLOCKS` names them, with the same names as ``golden/``, ``sim/timing/``,
``tests/`` and ``moeaccel verilog --block``. The generated module is named
``moeaccel_<config>_<block>`` so several configs can live in one Verilog project.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from moeaccel.config import DesignConfig
from moeaccel.errors import UserError

#: block name -> "module:ClassName" (imported lazily so one broken block does not hide the others)
BLOCKS: dict[str, str] = {
    "compute_unit": "hw.compute_unit:ComputeUnit",
    "softmax": "hw.softmax:Softmax",
    "gelu": "hw.gelu:Gelu",
    "router": "hw.router:Router",
    "gather": "hw.gather:Gather",
    "scatter": "hw.scatter:ScatterAccumulate",
    "moe_engine": "hw.moe_engine:MoeEngine",
}


def module_name(cfg: DesignConfig, block: str) -> str:
    """The Verilog top module name of ``block`` under ``cfg``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"moeaccel_{cfg.name}_{block}")


def block_class(block: str) -> type[wiring.Component]:
    if block not in BLOCKS:
        raise UserError(f"--block {block}: unknown block (blocks: {', '.join(BLOCKS)})")
    mod_name, cls_name = BLOCKS[block].split(":")
    return getattr(importlib.import_module(mod_name), cls_name)


def elaborate(block: str, cfg: DesignConfig) -> wiring.Component:
    """An instance of ``block`` built for ``cfg``."""
    return block_class(block)(cfg)


def generate(block: str, cfg: DesignConfig) -> str:
    """Verilog text for ``block`` under ``cfg``."""
    return verilog.convert(elaborate(block, cfg), name=module_name(cfg, block))


def write(block: str, cfg: DesignConfig, out_dir: Path) -> Path:
    """Write ``<module_name>.v`` into ``out_dir``; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{module_name(cfg, block)}.v"
    path.write_text(generate(block, cfg))
    return path
