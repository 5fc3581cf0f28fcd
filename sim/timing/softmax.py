"""Timing of the single-pass softmax block (``hw/softmax.py``).

The block is three row-level stages joined by small queues, so consecutive rows overlap:

* **accumulate** (A): one beat of ``lanes`` logits every :func:`input_interval` cycles
  (``hardware.softmax.accumulate_interval``), no further bubbles between rows. An
  :func:`accumulate_depth`-stage pipeline (log2(e) product, rounding, table read, interpolation
  product, interpolation sum, running max, running sum -- its shift and its add in one stage,
  or in two with an interval of 2 -- row push) writes each element into the row buffer; the
  row's ``{max, sum}`` is queued :func:`accumulate_depth` cycles after its last beat was
  accepted. A may run at most
  ``ROW_CREDITS`` rows ahead of the divider (a row's credit returns when the divider takes it).
* **reciprocal** (D): one iterative divider, ``divider_bits_per_cycle`` quotient bits per cycle:
  a row is taken in one cycle, iterated for :func:`divider_iterations` cycles and its ``1/sum``
  is available the cycle after. D takes the next row in the cycle its result is handed to B.
* **normalise** (B): takes a row's ``{max, 1/sum}`` in a cycle when it is idle or issuing that
  row's last buffer read, issues one buffer read per cycle from the next cycle on, and presents
  each probability ``NORMALISE_DEPTH`` cycles after its read (read, read register, partial
  products, their sum, shift, round into the output queue).

Cycle convention (shared with ``tests/hw/test_softmax.py``, which measures the RTL): the cycle in
which the first input beat is accepted is cycle 0; "output in cycle c" means ``valid`` is first
high in cycle c. With no stalls (input always valid, output always ready) the schedule below is
exact; :func:`cycles` counts through the last output handshake inclusive.

The RTL implements ``lanes == 1``; for larger ``lanes`` these functions model the natural
extension (one beat of ``lanes`` elements per cycle in A and B) and are not yet tied to RTL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from moeaccel.config import DesignConfig

#: cycles from a row's last beat accepted to its {max, sum} being readable by the divider, with
#: one beat per cycle (:func:`accumulate_depth` in general)
ACCUMULATE_DEPTH = 10
#: rows the accumulate stage may hold beyond the divider (row-queue depth)
ROW_CREDITS = 2
#: cycles from a buffer read issued to its probability presented on the output
NORMALISE_DEPTH = 7
#: beats the normalise stage's output queue holds; reads are issued while the reads in flight
#: plus the queued beats are fewer (``NORMALISE_DEPTH + 1`` keeps one per cycle into a ready sink)
OUTPUT_QUEUE = NORMALISE_DEPTH + 1


def beats(cfg: DesignConfig, length: int) -> int:
    """Stream beats that carry a row of ``length`` elements at ``lanes`` elements per beat."""
    if length < 1:
        raise ValueError(f"row length must be >= 1, got {length}")
    return math.ceil(length / cfg.hardware.softmax.lanes)


def input_interval(cfg: DesignConfig) -> int:
    """Cycles between two accepted input beats (at least): ``hardware.softmax.accumulate_interval``."""
    return cfg.hardware.softmax.accumulate_interval


def accumulate_depth(cfg: DesignConfig) -> int:
    """Cycles from a row's last beat accepted to its ``{max, sum}`` readable by the divider: with
    an input interval of 2 the running sum's shift has its own stage."""
    return ACCUMULATE_DEPTH + input_interval(cfg) - 1


def quotient_bits(cfg: DesignConfig) -> int:
    """Bits of the reciprocal ``1/sum`` (it can equal 1.0, hence ``recip_frac_bits + 1``)."""
    return cfg.hardware.softmax.recip_frac_bits + 1


def divider_iterations(cfg: DesignConfig) -> int:
    """Cycles the iterative divider spends on one row's reciprocal."""
    sm = cfg.hardware.softmax
    return math.ceil(quotient_bits(cfg) / sm.divider_bits_per_cycle)


def divider_interval(cfg: DesignConfig) -> int:
    """Cycles per row in the divider (take + iterations), the minimum row interval."""
    return divider_iterations(cfg) + 1


@dataclass(frozen=True)
class RowTimes:
    """When one row passes the block's milestones (cycles, see the module's convention)."""

    first_in: int   # first beat accepted
    last_in: int    # last beat accepted
    first_out: int  # first probability presented
    last_out: int   # last probability presented


def schedule(cfg: DesignConfig, rows: int, length: int) -> list[RowTimes]:
    """Exact no-stall schedule of ``rows`` back-to-back rows of ``length`` elements."""
    return schedule_lengths(cfg, [length] * rows)


class Pipeline:
    """The exact no-stall schedule, one row at a time: :meth:`row` gives the milestones of the
    next row, whose beats are offered back to back from cycle ``arrival`` on (``0``: always
    offered). Used by :func:`schedule_lengths` and by blocks that feed the softmax (the router)."""

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.iters = divider_iterations(cfg)
        self.gap = input_interval(cfg)
        self.depth = accumulate_depth(cfg)
        self.taken: list[int] = []   # cycle the divider took each row (returns A's credit)
        self.next_in = 0             # earliest cycle A may accept the next row's first beat
        self.div_free = 0            # earliest cycle the divider may take the next row
        self.norm_free = 0           # earliest cycle B may take the next row

    def row(self, length: int, arrival: int = 0) -> RowTimes:
        n = beats(self.cfg, length)
        first_in = max(self.next_in, arrival)
        if len(self.taken) >= ROW_CREDITS:
            first_in = max(first_in, self.taken[-ROW_CREDITS] + 1)
        last_in = first_in + (n - 1) * self.gap
        take = max(last_in + self.depth, self.div_free)
        self.taken.append(take)
        handed = max(take + self.iters + 1, self.norm_free)
        self.div_free = handed
        first_read = handed + 1
        self.norm_free = first_read + n - 1
        first_out = first_read + NORMALISE_DEPTH
        self.next_in = last_in + self.gap
        return RowTimes(first_in, last_in, first_out, first_out + n - 1)


def schedule_lengths(cfg: DesignConfig, lengths: Sequence[int]) -> list[RowTimes]:
    """Exact no-stall schedule of back-to-back rows of the given lengths."""
    pipe = Pipeline(cfg)
    return [pipe.row(length) for length in lengths]


def latency(cfg: DesignConfig) -> int:
    """Cycles from a lone row's LAST beat accepted to its first probability presented (the part
    of the latency that does not grow with the row length)."""
    return accumulate_depth(cfg) + divider_iterations(cfg) + 2 + NORMALISE_DEPTH


def row_latency(cfg: DesignConfig, length: int) -> int:
    """Cycles from a lone row's first beat accepted to its first probability presented."""
    return (beats(cfg, length) - 1) * input_interval(cfg) + latency(cfg)


def row_interval(cfg: DesignConfig, length: int) -> int:
    """Steady-state cycles per row when rows of ``length`` stream back to back: one beat per
    :func:`input_interval` unless the divider (one reciprocal per :func:`divider_interval`
    cycles) is slower."""
    return max(beats(cfg, length) * input_interval(cfg), divider_interval(cfg))


def cycles(cfg: DesignConfig, rows: int, length: int) -> int:
    """Cycles for ``rows`` rows of ``length`` elements with no stalls, from the first input
    handshake (cycle 0) through the last output handshake inclusive. Zero rows take 0 cycles."""
    if rows <= 0:
        return 0
    return schedule(cfg, rows, length)[-1].last_out + 1
