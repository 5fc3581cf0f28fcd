"""``moeaccel validate [--json] [--quick]``: the RTL on Verilator against the simulator."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "validate", help="run the RTL (Verilator) and the simulator on the same cases; compare",
        description="Runs each case (GEMMs, softmax rows, router layers, whole MoE layers on the engine, "
        "...) on the Verilated "
        "RTL and in the cycle-level simulator and prints, per case, the RTL cycles, the "
        "simulated cycles and the error in percent (target: within 1 %), then the MoE "
        "engine's FFN MAC utilisation and prefetch hiding (targets >= 90 % and >= 80 %). "
        "Verilator models are "
        "built once and cached under build/cocotb; progress goes to stderr.")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quick", action="store_true", help="only the cases on the tiny config")
    parser.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from moeaccel import validate

    results = validate.run_cases(quick=args.quick,
                                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(validate.to_json(results), indent=2))
    else:
        print(validate.table(results))
        perf = validate.performance_table(results)
        if perf:
            print()
            print(perf)
    ok = all(r.within_bound for r in results)
    return 0 if ok and all(p["meets_targets"] for p in validate.performance(results)) else 1
