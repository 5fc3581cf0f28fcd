"""The ``moeaccel`` command: parses arguments and calls library functions, nothing more.

Each subcommand is a module in :mod:`moeaccel.commands` that defines ``register(subparsers)``;
the registered handler receives the parsed arguments and returns an exit status. A
:class:`~moeaccel.errors.UserError` anywhere is printed as one ``error:`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moeaccel", description="Open MoE inference accelerator: config, golden model, "
        "RTL generation, cycle-level simulation and FPGA flow.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (e.g. `moeaccel sim | head`): not an error of ours
        sys.stderr.close()
        return 0
    except OSError as exc:
        # a path the user gave cannot be read or written (missing folder, no permission, ...)
        where = exc.filename or "file"
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
