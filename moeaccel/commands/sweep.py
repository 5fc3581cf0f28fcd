"""``moeaccel sweep SWEEP.yaml --out DIR [--jobs N]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep", help="simulate every combination of a sweep file's parameters",
        description="Cross the parameter lists of a sweep YAML, simulate every point in parallel "
        "and write results.csv and PNG plots into --out (see sim/sweep.py and "
        "sim/examples/sweep.yaml).")
    parser.add_argument("sweep", help="sweep YAML file")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--no-plots", action="store_true", help="write the CSV only")
    parser.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from sim import sweep

    for path in sweep.sweep_to_dir(args.sweep, args.out, jobs=args.jobs, plots=not args.no_plots):
        print(path)
    return 0
