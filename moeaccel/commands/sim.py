"""``moeaccel sim --config NAME|FILE --workload NAME|FILE [--json] [--save-trace FILE]``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sim", help="simulate a workload on a design (cycles, throughput, energy)",
        description="Cycle-level simulation of a workload on a design config: total cycles, "
        "latency, throughput, MAC utilisation, busy cycles per block, DRAM traffic and stalls, "
        "dropped tokens and an energy breakdown.")
    parser.add_argument("--config", default="m3vit-tiny", help="preset name or YAML file")
    parser.add_argument("--workload", default="m3vit-tiny",
                        help="built-in workload name, workload YAML, or trace (.jsonl/.npz)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save-trace", metavar="FILE",
                        help="also write the first inference's routing as a trace (.jsonl/.npz)")
    parser.set_defaults(handler=_sim)


def _sim(args: argparse.Namespace) -> int:
    from sim import simulator
    from sim.workloads import traces

    cfg, workload = simulator.prepare(args.config, args.workload)
    result = simulator.simulate(cfg, workload)
    if args.save_trace:
        traces.save(args.save_trace, cfg, workload.routing[0])
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.text())
    return 0
