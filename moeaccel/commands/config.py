"""``moeaccel config show NAME|FILE`` and ``moeaccel config list``."""

from __future__ import annotations

import argparse

from .. import config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="show or list design configs")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="print the resolved config (YAML)")
    show.add_argument("config", help="preset name or YAML file")
    show.set_defaults(handler=_show)
    lst = actions.add_parser("list", help="list the shipped presets")
    lst.set_defaults(handler=_list)


def _show(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    print(f"# {cfg.name} (digest {cfg.digest()})")
    print(cfg.to_yaml(), end="")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name in config.presets():
        print(name)
    return 0
