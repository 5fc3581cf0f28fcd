"""``moeaccel verilog --config NAME|FILE --block NAME|all -o DIR``: write blocks' Verilog.

Each block becomes ``DIR/moeaccel_<config>_<block>.v`` (see :mod:`hw.verilog`); the path of every
file written is printed. A block whose module cannot be imported (or lacks its class) is reported
as one error line; with ``--block all`` the other blocks are still written and the command then
fails naming the broken ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import config
from ..errors import UserError

DEFAULT_OUT = Path("build/verilog")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("verilog", help="generate the blocks' Verilog for a design config")
    parser.add_argument("--config", default="m3vit-tiny",
                        help="preset name or YAML file (default m3vit-tiny)")
    parser.add_argument("--block", default="all",
                        help="block name, or 'all' (default) for every block")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default {DEFAULT_OUT})")
    parser.set_defaults(handler=_verilog)


def _verilog(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    blocks = block_names(args.block)
    failed: list[str] = []
    for block in blocks:
        try:
            path = write_block(block, cfg, args.out)
        except UserError as exc:
            if len(blocks) == 1:
                raise
            print(f"error: {exc}", file=sys.stderr)
            failed.append(block)
            continue
        print(path, flush=True)
    if failed:
        raise UserError(f"--block all: {len(failed)} of {len(blocks)} blocks failed: "
                        f"{', '.join(failed)}")
    return 0


def block_names(block: str) -> list[str]:
    """``[block]`` or every registered block for ``"all"``; unknown names are a UserError."""
    from hw import verilog

    if block == "all":
        return list(verilog.BLOCKS)
    if block not in verilog.BLOCKS:
        raise UserError(f"--block {block}: unknown block (blocks: {', '.join(verilog.BLOCKS)}, "
                        f"all)")
    return [block]


def write_block(block: str, cfg: config.DesignConfig, out_dir: Path) -> Path:
    """:func:`hw.verilog.write`, with a block that cannot be loaded reported as a UserError."""
    from hw import verilog

    try:
        verilog.block_class(block)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"block {block}: cannot load {verilog.BLOCKS[block]} "
                        f"({type(exc).__name__}: {exc})") from None
    return verilog.write(block, cfg, out_dir)
