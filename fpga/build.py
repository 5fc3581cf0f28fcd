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
from .flow import (DoesNotFit, EcpResult, Usage, build_ecp5, estimate_xilinx, parse_yosys_stat,
                   roms_to_logic, synthesise, _cached, _digest)

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
          command: str, bitstream: bool = False, seed: int = 1,
          baud: int | None = None) -> tuple[Path, EcpResult]:
    """Place and route the ULX3S top hosting ``blocks``; write ``out/ulx3s-<tag>.md``."""
    names = resolve_blocks(blocks)
    tag = _tag(cfg, names)
    top = ulx3s.Ulx3sTop(cfg, names, baud=baud or ulx3s.DEFAULT_BAUD)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ulx3s-{tag}.md"
    title = f"ULX3S (ECP5-85F) build: config `{cfg.name}`, blocks {', '.join(names)}"
    try:
        result = build_ecp5(ulx3s.platform(), top, build_dir / f"ulx3s-{tag}",
                            bitstream=bitstream, seed=seed)
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
    each distributed-RAM cell as the LUT4s it occupies (as nextpnr's TRELLIS_COMB does)."""
    from amaranth.back import rtlil

    work = build_dir / f"block-{cfg.name}-{block}"
    work.mkdir(parents=True, exist_ok=True)
    il, _ = roms_to_logic(rtlil.convert(verilog.elaborate(block, cfg), name="top"))
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


#: (config, blocks) placed and routed by ``--sweep``; None = the board's default top (the engine)
SWEEP = [("ulx3s", ["gelu"]), ("ulx3s", ["softmax"]), ("ulx3s", ["router"]),
         ("ulx3s", ["gather"]), ("ulx3s", ["scatter"]), ("tiny", ["compute_unit"]),
         ("tiny", None)]
#: whole-design builds (too long for the sweep) whose cached results the table includes
FULL_BUILDS = ["ulx3s"]


def sweep(out: Path, build_dir: Path, command: str, seed: int = 1) -> Path:
    """Place and route the :data:`SWEEP` designs (None: the board's default top, the MoE
    engine), synthesise every block but the engine alone at ``ulx3s``,
    and write ``out/resources.md``. The full ``ulx3s`` top is included when it has been built
    (``moeaccel fpga --board ulx3s-85f --config ulx3s``): it takes too long to run here."""
    avail = available_blocks()
    rows, notes = [], []
    for cfg_name, blocks in SWEEP:
        cfg = config.load(cfg_name)
        names = list(ulx3s.DEFAULT_BLOCKS) if blocks is None else blocks
        missing = [b for b in names if b not in avail]
        if missing:
            notes.append(f"- `{cfg_name}` with {', '.join(names)}: skipped, "
                         f"{', '.join(missing)} not written yet")
            continue
        t0 = time.monotonic()
        try:
            top = ulx3s.Ulx3sTop(cfg, names)
            result = build_ecp5(ulx3s.platform(), top, build_dir / f"ulx3s-{_tag(cfg, names)}",
                                bitstream=False, seed=seed)
        except UserError as err:
            first = str(err).splitlines()[0]
            notes.append(f"- `{cfg_name}` with {', '.join(names)}: failed: {first}")
            continue
        rows.append((cfg, names, result, time.monotonic() - t0))
    for ref in FULL_BUILDS:
        full_cfg = config.load(ref)
        engine = list(ulx3s.DEFAULT_BLOCKS)
        done = build_dir / f"ulx3s-{_tag(full_cfg, engine)}" / "result.json"
        if done.exists():
            rows.append((full_cfg, engine, EcpResult.from_json(done.read_text()),
                         None))
        else:
            notes.append(f"- `{ref}` with the MoE engine: no place-and-route result; see "
                         f"reports/fpga/ulx3s-{_tag(full_cfg, engine)}.md "
                         f"(`moeaccel fpga --board ulx3s-85f --config {ref}`)")
    full_cfg = config.load("ulx3s")
    blocks = []
    for b in (b for b in avail if b not in ulx3s.DEFAULT_BLOCKS):   # the engine: full build
        try:
            blocks.append(block_synth(b, full_cfg, build_dir))
        except UserError as err:
            notes.append(f"- {b} alone at ulx3s: synthesis failed: {str(err).splitlines()[0]}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "resources.md"
    path.write_text(_sweep_markdown(rows, blocks, notes, command))
    return path


def _sweep_markdown(rows, blocks: list[BlockSynth], notes: list[str], command: str) -> str:
    avail = ulx3s.AVAILABLE
    lines = ["# FPGA resources and Fmax (Lattice ECP5-85F, ULX3S)", "",
             f"Made by `{command}` (YoWASP Yosys `synth_ecp5` + nextpnr-ecp5, seed 1).", "",
             "## Board top (PLL + UART + host bridge + blocks), after place and route", "",
             "| config | blocks | LUT4 | FF | MULT18 | BRAM16 | Fmax (MHz) | target | result | "
             "build (s) |", "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]

    def pct(res: dict[str, Usage], key: str) -> str:
        u = res.get(key)
        return f"{u.used} ({u.percent:.1f}%)" if u else "-"

    for cfg, names, r, seconds in rows:
        fmax = min((c.fmax_mhz for c in r.clocks), default=0.0)
        build_s = sum(r.seconds.values())
        lines.append(f"| {cfg.name} | {', '.join(names)} | {pct(r.resources, 'lut4')} | "
                     f"{pct(r.resources, 'ff')} | {pct(r.resources, 'mult18')} | "
                     f"{pct(r.resources, 'bram16')} | {fmax:.1f} | {cfg.hardware.clock_mhz:g} | "
                     f"{'PASS' if r.passed else 'FAIL'} | {build_s:.0f} |")
    lines += ["", "## Each block alone (ulx3s config, `synth_ecp5` out of context, before P&R)", "",
              "| block | LUT4 | % of 83640 | FF | MULT18 | BRAM16 | synth (s) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for b in blocks:
        lines.append(f"| {b.block} | {b.lut4} | {100 * b.lut4 / avail['lut4']:.2f} | {b.ff} | "
                     f"{b.mult18} | {b.bram16} | {b.seconds:.1f} |")
    limit = [b for b in blocks if b.block in ("softmax", "gelu")]
    if limit:
        worst = max(limit, key=lambda b: b.lut4)
        ok = worst.lut4 <= 0.10 * avail["lut4"]
        lines += ["", f"Softmax/GELU LUT budget (10% of the part each): **{'met' if ok else 'MISSED'}**"
                  f" (largest: {worst.block}, {100 * worst.lut4 / avail['lut4']:.2f}%)."]
    if notes:
        lines += ["", "Not built:", "", *notes]
    return "\n".join(lines) + "\n"
