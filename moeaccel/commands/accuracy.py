"""``moeaccel accuracy [--config NAME|FILE] [--seed N] [--json]``: golden blocks vs float."""

from __future__ import annotations

import argparse
import json

from .. import config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "accuracy", help="measure every golden block's error against its float64 reference")
    parser.add_argument("--config", default="m3vit-tiny",
                        help="preset or YAML whose block formats are measured (default "
                        "m3vit-tiny); the MoE layer error is always reported for the presets "
                        "tiny, m3vit-tiny, mixtral-layer and deepseek-layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from golden import accuracy

    figures = accuracy.measure(config.load(args.config), args.seed)
    verdicts = accuracy.check(figures)
    if args.json:
        print(json.dumps({**figures, "targets_met": verdicts}, indent=2))
    else:
        print(f"Accuracy of the golden blocks ({figures['config']}, seed {figures['seed']}), "
              "each against float64 on the same quantised inputs:\n")
        print(accuracy.table(figures))
    return 0 if all(verdicts.values()) else 1
