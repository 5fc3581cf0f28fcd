"""``moeaccel fpga``: bitstreams and resource/timing reports through the open FPGA flow.

    moeaccel fpga --board ulx3s-85f --config ulx3s [--blocks gelu,softmax] [--bitstream]
                  [--seed 1,2] [--router router1]
    moeaccel fpga --part xczu9eg --config ulx3s
    moeaccel fpga --sweep [FILE]          (default fpga/sweep.yaml)
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from fpga.flow import ROUTERS

from .. import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fpga", help="synthesise, place and route (ECP5) or estimate (xczu9eg)",
                       description="Open FPGA flow: Yosys, nextpnr-ecp5 and ecppack from PyPI "
                       "(YoWASP). Writes a Markdown report under --out.")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--board", choices=["ulx3s-85f"], help="build the board top")
    target.add_argument("--part", choices=["xczu9eg"],
                        help="synth_xilinx resource estimate on the reference design's part")
    target.add_argument("--sweep", nargs="?", const="", metavar="FILE",
                        help="build the design points of FILE (default fpga/sweep.yaml) and "
                        "write a resource/Fmax table (resources.md)")
    p.add_argument("--config", default="ulx3s", help="preset name or YAML file (default ulx3s)")
    p.add_argument("--blocks", help="comma-separated blocks to host (default: moe_engine, which "
                   "contains all the others)")
    p.add_argument("--bitstream", action="store_true", help="also run ecppack to write the .bit")
    p.add_argument("--clock-mhz", type=_positive(float),
                   help="override hardware.clock_mhz (the target)")
    p.add_argument("--baud", type=_positive(int), default=None,
                   help="UART baud rate (default 115200)")
    p.add_argument("--seed", type=_seeds, default=(1,), metavar="N[,N...]",
                   help="nextpnr placement seed, or several (comma-separated): each is placed "
                   "and routed, up to one per CPU core at a time, and the fastest is kept "
                   "(default 1)")
    p.add_argument("--router", choices=ROUTERS, default=ROUTERS[0],
                   help=f"nextpnr router (default {ROUTERS[0]}; try router1 where router2 stops "
                   "converging)")
    p.add_argument("--out", type=Path, default=Path("reports/fpga"), help="report directory")
    p.add_argument("--build-dir", type=Path, default=Path("build/fpga"),
                   help="tool work directory (cached by design hash)")
    p.set_defaults(handler=_run)


def _positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` that must be > 0 (argparse reports the error)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    parse.__name__ = kind.__name__      # argparse names the type in its messages
    return parse


def _seeds(text: str) -> tuple[int, ...]:
    """An argparse type: distinct placement seeds, ``1`` or ``1,2,3``."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") \
            from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is repeated: {text}")
    return seeds


_seeds.__name__ = "seeds"


def _run(args: argparse.Namespace) -> int:
    from fpga import build

    command = "moeaccel " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv and sys.argv[0].endswith("moeaccel") else "moeaccel fpga " + _describe(args)
    blocks = args.blocks.split(",") if args.blocks else None
    if args.sweep is not None:
        from fpga import sweep
        points = sweep.load(args.sweep or sweep.DEFAULT)
        path = sweep.run(points, args.out, args.build_dir, command, seeds=args.seed)
        print(f"wrote {path}")
        return 0
    cfg = config.load(args.config)
    if args.clock_mhz is not None:
        cfg = cfg.replace({"hardware.clock_mhz": args.clock_mhz})
    if args.part:
        path, _ = build.xilinx_estimate(cfg, blocks, args.out, args.build_dir, command)
    else:
        path, result = build.board(cfg, blocks, args.out, args.build_dir, command,
                                   bitstream=args.bitstream, seeds=args.seed, baud=args.baud,
                                   router=args.router)
        if len(args.seed) > 1:
            print("placement seeds (slowest clock's Fmax): " + ", ".join(
                f"{seed}: {mhz:.2f} MHz" for seed, mhz in result.seed_fmax.items())
                + f"; kept seed {result.seed}")
        for c in result.clocks:
            print(f"{c.clock}: Fmax {c.fmax_mhz:.2f} MHz, target {c.target_mhz:g} MHz: "
                  f"{'PASS' if c.passed else 'FAIL'}")
    print(f"wrote {path}")
    return 0


def _describe(args: argparse.Namespace) -> str:
    parts = []
    for name in ("board", "part", "config", "blocks", "clock_mhz", "baud"):
        v = getattr(args, name)
        if v is not None:
            parts.append(f"--{name.replace('_', '-')} {v}")
    if args.seed != (1,):
        parts.append("--seed " + ",".join(map(str, args.seed)))
    if args.router != ROUTERS[0]:
        parts.append(f"--router {args.router}")
    if args.sweep is not None:
        parts.append(f"--sweep {args.sweep}".strip())
    if args.bitstream:
        parts.append("--bitstream")
    return " ".join(parts)
