"""Markdown reports of FPGA builds: one build's resources and timing, and sweep tables."""

from __future__ import annotations

from .flow import DoesNotFit, EcpResult, Usage, XilinxResult

#: rows of the ECP5 resource table, in order
ECP5_ROWS = [("lut4", "LUT4"), ("ff", "FF"), ("mult18", "MULT18X18D"), ("bram16", "DP16KD (BRAM16)"),
             ("lutram_w", "LUTRAM write ports"), ("io", "I/O"), ("pll", "PLL")]
XILINX_ROWS = [("lut", "LUT"), ("ff", "FF"), ("dsp", "DSP48E2"), ("bram36", "BRAM36")]


def _usage_table(resources: dict[str, Usage], rows) -> list[str]:
    lines = ["| resource | used | available | % |", "|---|---:|---:|---:|"]
    for key, label in rows:
        if key in resources:
            u = resources[key]
            lines.append(f"| {label} | {u.used} | {u.available} | {u.percent:.1f} |")
    return lines


def ecp5_markdown(title: str, result: EcpResult, command: str, target_mhz: float,
                  goal_mhz: float | None = None) -> str:
    lines = [f"# {title}", "", f"Made by `{command}`", "",
             f"Device {result.device} ({'bitstream ' + result.bitstream if result.bitstream else 'no bitstream'}); "
             f"target clock {target_mhz:g} MHz. Tools: YoWASP Yosys (`synth_ecp5`), nextpnr-ecp5, ecppack.",
             "", "## Resources (after place and route)", ""]
    lines += _usage_table(result.resources, ECP5_ROWS)
    lines += ["", "## Timing", "", "| clock | Fmax (MHz) | target (MHz) | result |", "|---|---:|---:|---|"]
    for c in result.clocks:
        verdict = "PASS" if c.passed else "FAIL"
        if goal_mhz and c.passed:
            verdict += f" (goal {goal_mhz:g} MHz: {'met' if c.fmax_mhz >= goal_mhz else 'not met'})"
        lines.append(f"| `{c.clock}` | {c.fmax_mhz:.2f} | {c.target_mhz:g} | {verdict} |")
    lines += ["", f"Overall: **{'PASS' if result.passed else 'FAIL'}** at {target_mhz:g} MHz.", ""]
    if len(result.seed_fmax) > 1:
        tried = ", ".join(f"seed {seed}: {mhz:.2f} MHz" for seed, mhz in result.seed_fmax.items())
        lines += [f"Placement seed {result.seed}, the fastest of " + tried
                  + " (each placed and routed; the report, the bitstream and the paths below are "
                  f"seed {result.seed}'s).", ""]
    else:
        lines += [f"Placement seed {result.seed}.", ""]
    lines += ["## Critical paths", "", "| clock | start | end | delay (ns) |", "|---|---|---|---:|"]
    for p in result.critical_paths:
        lines.append(f"| {p.clock} | `{p.start}` | `{p.end}` | {p.delay_ns:.2f} |")
    if result.cells:
        lines += ["", "## Cells after synthesis, by part", ""]
        lines += _cells_table(result.cells)
    lines += ["", "## Build time", "", "| step | seconds |", "|---|---:|"]
    for step, sec in result.seconds.items():
        lines.append(f"| {step} | {sec:.1f} |")
    return "\n".join(lines) + "\n"


def xilinx_markdown(title: str, result: XilinxResult, command: str) -> str:
    lines = [f"# {title}", "", f"Made by `{command}`", "",
             f"Part {result.part} (the reference design's ZCU102), Yosys `synth_xilinx -family "
             f"xcup`: synthesis only, no timing. Synthesis took {result.seconds:.1f} s.", ""]
    lines += _usage_table(result.resources, XILINX_ROWS)
    lines += ["", "Cells:", "", "| cell | count |", "|---|---:|"]
    for cell, n in sorted(result.cells.items()):
        lines.append(f"| {cell} | {n} |")
    return "\n".join(lines) + "\n"


def _cells_table(by_part: dict[str, dict[str, int]]) -> list[str]:
    cells = sorted({c for counts in by_part.values() for c in counts
                    if c in ("MULT18X18D", "DP16KD", "LUT4", "TRELLIS_FF", "CCU2C",
                             "TRELLIS_DPR16X4")})
    lines = ["| part | " + " | ".join(cells) + " |", "|---|" + "---:|" * len(cells)]
    for part, counts in sorted(by_part.items()):
        if any(counts.get(c) for c in cells):
            lines.append(f"| {part} | " + " | ".join(str(counts.get(c, 0)) for c in cells) + " |")
    return lines


def does_not_fit_markdown(title: str, err: DoesNotFit, command: str) -> str:
    """Why a design was not placed: hard-block counts after synthesis, per block."""
    lines = [f"# {title}", "", f"Made by `{command}`", "",
             f"**Does not fit {err.device}** (stopped after synthesis, before place and route): "
             + "; ".join(f"{c} {u} used > {a} available" for c, (u, a) in err.needs.items()) + ".",
             "", "Cells after `synth_ecp5`, by block:", ""]
    lines += _cells_table(err.by_part)
    return "\n".join(lines) + "\n"
