"""``moeaccel fpga --sweep [FILE]``: place and route a list of design points on the ULX3S and write
one table of resources and Fmax (``reports/fpga/resources.md``).

A sweep file (default :data:`DEFAULT`, ``fpga/sweep.yaml``) lists design points; each is a preset
or config file, optional dotted-key overrides and the blocks hosted on the board::

    points:
      - {config: tiny}                                  # the MoE engine, tiny preset
      - {config: tiny, name: tiny-2x8, set: {hardware.compute_unit.rows: 2}}
      - {config: ulx3s, blocks: [gelu]}                 # one block alone behind the host bridge

Every point is one full board build (:func:`fpga.build.board`: synthesis, placement, routing),
cached by design hash, so re-running the sweep after a change rebuilds only the points it
touched. Each point also writes its own report beside the table. Every block but the engine is
also synthesised alone at ``ulx3s`` for the softmax/GELU LUT budget (10 % of the part each).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moeaccel import config
from moeaccel.config import DesignConfig
from moeaccel.errors import ConfigError, UserError
from moeaccel.yaml_files import read_yaml

from . import build
from .boards import ulx3s
from .flow import EcpResult, Usage

DEFAULT = Path(__file__).with_name("sweep.yaml")
_KEYS = {"config", "name", "set", "blocks"}


@dataclass(frozen=True)
class Point:
    """One design point: ``config`` with ``overrides``, hosting ``blocks`` (None: the engine)."""

    config: str
    name: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    blocks: list[str] | None = None

    def design(self) -> DesignConfig:
        cfg = config.load(self.config)
        if self.overrides:
            cfg = cfg.replace(self.overrides)
        return cfg.replace({"name": self.name}) if self.name else cfg


def load(path: str | Path) -> list[Point]:
    """The sweep file's points, each checked (config loads, blocks exist); one-line errors."""
    path = Path(path)
    data = read_yaml(path, "FPGA sweep file")
    if not isinstance(data, dict) or not isinstance(data.get("points"), list) or not data["points"]:
        raise ConfigError(f"{path}: points", "must be a non-empty list of design points")
    points = []
    for i, raw in enumerate(data["points"]):
        where = f"{path}: points[{i}]"
        if not isinstance(raw, dict) or "config" not in raw:
            raise ConfigError(where, "must be a mapping with at least `config`")
        unknown = set(raw) - _KEYS
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}",
                              f"unknown key (expected one of: {', '.join(sorted(_KEYS))})")
        overrides = raw.get("set") or {}
        blocks = raw.get("blocks")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}.set", "must be a mapping of dotted config keys to values")
        if blocks is not None and (not isinstance(blocks, list) or not blocks):
            raise ConfigError(f"{where}.blocks", "must be a non-empty list of block names")
        point = Point(str(raw["config"]), raw.get("name"), dict(overrides), blocks)
        try:
            point.design()
            build.resolve_blocks(blocks)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        points.append(point)
    return points


def run(points: list[Point], out: Path, build_dir: Path, command: str,
        seeds: Sequence[int] = (1,)) -> Path:
    """Build every point (failures become notes in the table), synthesise the blocks alone and
    write ``out/resources.md``."""
    rows: list[tuple[DesignConfig, list[str], EcpResult]] = []
    notes: list[str] = []
    for point in points:
        cfg = point.design()
        names = build.resolve_blocks(point.blocks)
        print(f"[sweep] {cfg.name}: {', '.join(names)}", flush=True)
        try:
            _, result = build.board(cfg, names, out, build_dir, command, seeds=seeds)
        except UserError as err:
            notes.append(f"- `{cfg.name}` with {', '.join(names)}: {str(err).splitlines()[0]}")
            continue
        rows.append((cfg, names, result))
    alone_cfg = config.load("ulx3s")
    alone = []
    for block in build.available_blocks():
        if block in ulx3s.DEFAULT_BLOCKS:
            continue                      # the engine is a board point above
        try:
            alone.append(build.block_synth(block, alone_cfg, build_dir))
        except UserError as err:
            notes.append(f"- {block} alone at ulx3s: synthesis failed: {str(err).splitlines()[0]}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "resources.md"
    path.write_text(markdown(rows, alone, notes, command, time.strftime("%Y-%m-%d"), seeds))
    return path


def _placements(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"each row the best placement of seeds {', '.join(map(str, seeds))}"


def _pct(res: dict[str, Usage], key: str) -> str:
    u = res.get(key)
    return f"{u.used} ({u.percent:.1f}%)" if u else "-"


def markdown(rows: list[tuple[DesignConfig, list[str], EcpResult]],
             alone: list[build.BlockSynth], notes: list[str], command: str, date: str,
             seeds: Sequence[int] = (1,)) -> str:
    """The sweep table: one row per built point, then each block synthesised alone."""
    avail = ulx3s.AVAILABLE
    lines = ["# FPGA resources and Fmax (Lattice ECP5-85F, ULX3S)", "",
             f"Made by `{command}` on {date} (YoWASP Yosys `synth_ecp5`, nextpnr-ecp5, "
             f"{_placements(seeds)}). "
             "Every row is the ULX3S board top (PLL, UART host bridge) hosting the named blocks, "
             "placed and routed; Fmax is nextpnr's routed figure for the design clock. Build time "
             "is synthesis plus place and route, in seconds of wall time on a shared 2-core "
             "machine (WebAssembly tools).", "",
             "| config | array | blocks | LUT4 | FF | MULT18 | BRAM16 | Fmax (MHz) | target | "
             "result | build (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for cfg, names, r in rows:
        cu = cfg.hardware.compute_unit
        fmax = min((c.fmax_mhz for c in r.clocks), default=0.0)
        lines.append(f"| {cfg.name} | {cu.rows}x{cu.cols} | {', '.join(names)} | "
                     f"{_pct(r.resources, 'lut4')} | {_pct(r.resources, 'ff')} | "
                     f"{_pct(r.resources, 'mult18')} | {_pct(r.resources, 'bram16')} | "
                     f"{fmax:.1f} | {cfg.hardware.clock_mhz:g} | "
                     f"{'PASS' if r.passed else 'FAIL'} | {sum(r.seconds.values()):.0f} |")
    lines += ["", "## Each block alone (ulx3s config, `synth_ecp5` out of context, before P&R)", "",
              "| block | LUT4 | % of 83640 | FF | MULT18 | BRAM16 | synth (s) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for b in alone:
        lines.append(f"| {b.block} | {b.lut4} | {100 * b.lut4 / avail['lut4']:.2f} | {b.ff} | "
                     f"{b.mult18} | {b.bram16} | {b.seconds:.1f} |")
    budget = [b for b in alone if b.block in ("softmax", "gelu")]
    if budget:
        worst = max(budget, key=lambda b: b.lut4)
        ok = worst.lut4 <= 0.10 * avail["lut4"]
        lines += ["", f"Softmax/GELU LUT budget (10% of the part each): "
                  f"**{'met' if ok else 'MISSED'}** (largest: {worst.block}, "
                  f"{100 * worst.lut4 / avail['lut4']:.2f}%)."]
    if notes:
        lines += ["", "Not built:", "", *notes]
    return "\n".join(lines) + "\n"
