"""``moeaccel demo [--config NAME|FILE] [--out DIR]``: the main job, end to end (see moeaccel.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="generate Verilog, measure accuracy, simulate and sweep; write a report",
        description="The newest end-to-end path on one config: Verilog for every block, golden "
        "accuracy vs float, a cycle-level simulation of the default workload and a small sweep, "
        "written as a Markdown report with plots.")
    parser.add_argument("--config", default="m3vit-tiny", help="preset name or YAML file")
    parser.add_argument("--out", type=Path, default=Path("reports/demo"), help="report folder")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .. import demo

    demo.run(args.config, args.out)
    return 0
