"""Timing of the MoE engine's weight fetcher (``hw/weight_fetch.py``): one DRAM request per
weight block (:mod:`moeaccel.weight_image`), its beats written into a ping/pong slot.

A fetch command handshake is cycle 0; the DRAM request is offered in cycle ``CMD_CYCLES`` and
the fetcher is ``busy`` from then for the DRAM's latency plus one cycle per beat
(:func:`busy_cycles`, at the port's full rate; :func:`sim.dram.request_cycles` in general);
``done`` pulses ``DONE_CYCLES`` after the last beat, when the next command is accepted.
"""

from __future__ import annotations

import math

from moeaccel.config import DesignConfig
from sim import dram

#: cycles from the command handshake to the DRAM request being offered
CMD_CYCLES = 1
#: cycles from the last beat's handshake to ``done`` (the next command is accepted then)
DONE_CYCLES = 1


def port_bytes(cfg: DesignConfig) -> int:
    """Bytes per DRAM data beat: ``dram.bytes_per_cycle`` rounded down to an integer (>= 1)."""
    return max(1, int(cfg.hardware.dram.bytes_per_cycle))


def beats(cfg: DesignConfig, nbytes: int) -> int:
    """Data beats of a request of ``nbytes`` bytes."""
    return math.ceil(nbytes / port_bytes(cfg))


def busy_cycles(cfg: DesignConfig, nbytes: int) -> int:
    """Cycles ``busy`` is high for one block of ``nbytes``: the request's latency and transfer
    (the engine's ``status.dram_busy`` per fetch)."""
    return dram.request_cycles(cfg, nbytes)


def cycles(cfg: DesignConfig, nbytes: int) -> int:
    """Cycles from a command handshake (cycle 0) to the cycle ``done`` pulses, when the next
    command can be accepted."""
    return CMD_CYCLES + busy_cycles(cfg, nbytes) + DONE_CYCLES - 1


def latency(cfg: DesignConfig) -> int:
    """Cycles from the command handshake to the first beat being written (full rate)."""
    return CMD_CYCLES + cfg.hardware.dram.latency_cycles
