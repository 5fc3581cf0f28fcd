"""What ``moeaccel fpga`` does: board builds, xczu9eg estimates and the resource sweep.

Each function builds one thing through :mod:`fpga.flow`, writes a Markdown report under
``out`` and returns its path (and the parsed result). Work directories live under ``build_dir``,
one per (board, config, blocks), so a repeated build with nothing changed is a cache hit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hw import verilog
from hw.host_bridge import HostBridge
from moeaccel import config
from moeaccel.config import DesignConfig
from moeaccel.errors import UserError

from . import report
from .boards import ulx3s
from .flow import (ROUTER, DoesNotFit, EcpResult, Usage, build_ecp5, estimate_xilinx,
                   parse_yosys_stat, roms_to_logic, synthesise, _cached, _digest)

GOAL_MHZ = 150.0


def resolve_blocks(blocks: Sequence[str] | None) -> list[str]:
    """``blocks`` checked against the registry (default: :data:`ulx3s.DEFAULT_BLOCKS`, the MoE
    engine)."""
    names = list(ulx3s.DEFAULT_BLOCKS) if blocks is None else list(blocks)
    for name in names:
        verilog.block_class(name)   # UserError for an unknown name
    if "moe_engine" in names and len(names) > 1:
        raise UserError(f"--blocks {','.join(names)}: moe_engine contains every other block; "
                        "host it alone (hosting both builds them twice)")
    return names


def available_blocks() -> list[str]:
    """Registered blocks whose module imports (blocks are written concurrently)."""
    out = []
    for name in verilog.BLOCKS:
        try:
            verilog.block_class(name)
        except ImportError:
            continue
        out.append(name)
    return out


def _tag(cfg: DesignConfig, blocks: Sequence[str]) -> str:
    which = "all" if list(blocks) == list(verilog.BLOCKS) else "+".join(blocks)
    return f"{cfg.name}-{which}"


def board(cfg: DesignConfig, blocks: Sequence[str] | None, out: Path, build_dir: Path,
          command: str, bitstream: bool = False, seeds: Sequence[int] = (1,),
          baud: int | None = None, router: str = ROUTER) -> tuple[Path, EcpResult]:
    """Place and route the ULX3S top hosting ``blocks``; write ``out/ulx3s-<tag>.md``."""
    names = resolve_blocks(blocks)
    tag = _tag(cfg, names)
    top = ulx3s.Ulx3sTop(cfg, names, baud=baud or ulx3s.DEFAULT_BAUD)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ulx3s-{tag}.md"
    title = f"ULX3S (ECP5-85F) build: config `{cfg.name}`, blocks {', '.join(names)}"
    try:
        result = build_ecp5(ulx3s.platform(), top, build_dir / f"ulx3s-{tag}",
                            bitstream=bitstream, seeds=seeds, router=router)
    except DoesNotFit as err:
        path.write_text(report.does_not_fit_markdown(title, err, command))
        raise UserError(f"{err} (report: {path})") from None
    path.write_text(report.ecp5_markdown(title, result, command, cfg.hardware.clock_mhz,
                                         GOAL_MHZ))
    return path, result


def xilinx_estimate(cfg: DesignConfig, blocks: Sequence[str] | None, out: Path, build_dir: Path,
                    command: str) -> tuple[Path, object]:
    """``synth_xilinx`` estimate of the blocks behind the host bridge (no board I/O)."""
    names = resolve_blocks(blocks)
    tag = _tag(cfg, names)
    design = HostBridge(ulx3s.host_blocks(cfg, names), depth=ulx3s.DEFAULT_DEPTH,
                        wide_depth=ulx3s.WIDE_DEPTH)
    result = estimate_xilinx(design, build_dir / f"xczu9eg-{tag}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"xczu9eg-{tag}.md"
    title = f"xczu9eg estimate: config `{cfg.name}`, blocks {', '.join(names)} (behind the host bridge)"
    path.write_text(report.xilinx_markdown(title, result, command))
    return path, result


@dataclass(frozen=True)
class BlockSynth:
    """A block synthesised alone for ECP5 (out of context, before place and route)."""

    block: str
    config: str
    lut4: int
    ff: int
    mult18: int
    bram16: int
    seconds: float


def block_synth(block: str, cfg: DesignConfig, build_dir: Path) -> BlockSynth:
    """``synth_ecp5`` of one block alone; LUT4 counts each CCU2C carry cell as two LUT4s and
    each distributed-RAM cell as the LUT4s it occupies (as nextpnr's TRELLIS_COMB does). The
    block is elaborated for the ULX3S platform, so its memories map as on the board
    (:class:`hw.sliced_memory.SlicedMemory` slices)."""
    from amaranth.back import rtlil

    work = build_dir / f"block-{cfg.name}-{block}"
    work.mkdir(parents=True, exist_ok=True)
    il, _ = roms_to_logic(rtlil.convert(verilog.elaborate(block, cfg), name="top",
                                        platform=ulx3s.platform()))
    (work / "top.il").write_text(il)
    script = "read_rtlil top.il\nsynth_ecp5 -top top\ntee -q -o stat.json stat -json\n"
    (work / "block.ys").write_text(script)
    key = _digest(il, script)
    if not _cached(work / "block.key", key):
        seconds = synthesise(work, "block.ys", "block", f"synth_ecp5 of {block} alone ({cfg.name})")
        (work / "block.key").write_text(key)
        (work / "block.seconds").write_text(f"{seconds:.1f}")
    cells = parse_yosys_stat((work / "stat.json").read_text())
    lut4 = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 4 * cells.get("TRELLIS_DPR16X4", 0)
    ff = sum(n for c, n in cells.items() if c == "TRELLIS_FF")
    return BlockSynth(block, cfg.name, lut4, ff, cells.get("MULT18X18D", 0),
                      cells.get("DP16KD", 0), float((work / "block.seconds").read_text()))
