"""Simulator speed figures (prints them; not a timed test).

Targets (issue): one whole m3vit-tiny inference simulated in < 1 s; a 1000-point sweep in < 60 s
on a 2-core machine. Run: ``python benchmarks/sim_speed.py [--jobs N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moeaccel import config  # noqa: E402
from sim import simulator, sweep, workloads  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    cfg = config.load("m3vit-tiny")
    spec = workloads.load("m3vit-tiny")
    t0 = time.perf_counter()
    result = simulator.run(cfg, spec)
    first = time.perf_counter() - t0
    times, sim_only = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        c, wl = simulator.prepare(cfg, spec)
        t1 = time.perf_counter()
        simulator.simulate(c, wl)
        t2 = time.perf_counter()
        times.append(t2 - t0)
        sim_only.append(t2 - t1)
    print(f"m3vit-tiny inference ({result.steps} steps, {result.total_cycles:,} cycles simulated):")
    print(f"  first run (cold caches)        {first * 1e3:8.1f} ms")
    print(f"  routing + simulation, median   {statistics.median(times) * 1e3:8.1f} ms "
          f"over {args.repeats} runs   (target < 1000 ms)")
    print(f"  simulation only, median        {statistics.median(sim_only) * 1e3:8.1f} ms")

    s = sweep.load(ROOT / "benchmarks" / "sweep-1000.yaml")
    n = len(s.points())
    t0 = time.perf_counter()
    rows = sweep.run(s, jobs=args.jobs, progress=False)
    elapsed = time.perf_counter() - t0
    print(f"{n}-point sweep on {args.jobs} process(es) (m3vit-tiny, whole model):")
    print(f"  {elapsed:8.1f} s   ({elapsed / n * 1e3:.1f} ms per point; target < 60 s)")
    assert len(rows) == n
    return 0


if __name__ == "__main__":
    sys.exit(main())
