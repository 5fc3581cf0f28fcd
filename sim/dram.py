"""The DRAM channel: one request at a time, a fixed latency then ``bytes_per_cycle``.

A request of ``b`` bytes issued in cycle ``t`` delivers its last byte in cycle
``t + latency_cycles + ceil(b / bytes_per_cycle)``, and the channel takes its next request then
(requests are not overlapped, so every request pays the latency: a conservative model of a simple
DMA engine). Weights and activations share the channel, in program order.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig


def transfer_cycles(cfg: DesignConfig, nbytes: int) -> int:
    """Cycles the channel is busy moving ``nbytes`` once the request has been served."""
    return math.ceil(nbytes / cfg.hardware.dram.bytes_per_cycle)


def request_cycles(cfg: DesignConfig, nbytes: int) -> int:
    """Cycles from issuing a request of ``nbytes`` to its last byte (0 for an empty request)."""
    if nbytes <= 0:
        return 0
    return cfg.hardware.dram.latency_cycles + transfer_cycles(cfg, nbytes)
