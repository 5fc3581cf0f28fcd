"""Per-block timing (latency, throughput) as functions of the design config.

One module per hardware block, named like the block (``sim.timing.softmax`` for ``hw/softmax.py``).
The hardware tests assert that the RTL's measured cycles equal these functions, so the simulator is
tied to the RTL by construction. Each module exposes at least::

    latency(cfg: DesignConfig) -> int          # cycles from first input accepted to first output
    cycles(cfg: DesignConfig, **shape) -> int  # cycles for one whole job with no stalls
"""
