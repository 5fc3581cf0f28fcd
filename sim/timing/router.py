"""Timing of the router block (``hw/router.py``): router logits in -> per-expert token queues.

Pipeline (``R = experts + null_experts`` logits per token, one per beat; ``k = top_k``):

* ``softmax_topk``: logits -> softmax unit (``sim.timing.softmax``, one logit per
  :func:`sim.timing.softmax.input_interval` cycles) over all ``R`` -> a skid buffer and a
  register slice (``TOPK_INPUT_DELAY``) -> top-k scan of the probabilities (one per cycle) ->
  ``k`` slots, one per cycle, starting the cycle after the token's last probability is scanned; each is written to its queue ``WRITE_DELAY`` cycles after.
* ``topk_softmax``: logits -> top-k scan (one per cycle) -> the ``k`` chosen logits go to the
  softmax unit as a row of ``k``, their ids to a small FIFO -> each probability is written to
  its queue in the cycle it leaves the softmax. The scan stalls a token's last logit until the
  previous token's ``k`` logits have all entered the softmax. Each slot is written to its queue
  ``WRITE_DELAY`` cycles after it leaves the softmax.

Queue writes never stall. After the last token a flush reads the queues out
(:func:`readout_cycles`).

Cycle convention (asserted against the RTL by ``tests/hw/test_router.py``): the cycle in which
the first logit is accepted is cycle 0; with logits always offered, :func:`cycles` counts through
the last queue write inclusive.
"""

from __future__ import annotations

from collections.abc import Callable

from moeaccel.config import DesignConfig
from sim.timing import softmax

#: cycles from a slot accepted by the expert queues to its queue write (the slot is registered)
WRITE_DELAY = 1
#: ``softmax_topk``: cycles from a probability leaving the softmax to the top-k scan taking it
#: (a register slice between them)
TOPK_INPUT_DELAY = 1
#: read stages of the expert queues' memory in the read-out: the read, then the block RAMs'
#: output registers (``hw.block_ram.BlockRam``)
READOUT_READ_STAGES = 2
#: register stages in front of the read-out's memory read: the registered flush handshake, then
#: the generator's registers
READOUT_SETUP = 2
#: cycles from the flush handshake to the first read-out entry being valid (the setup stages,
#: then the memory's read stages)
READOUT_FIRST = READOUT_SETUP + READOUT_READ_STAGES
#: cycles from the flush handshake to ``busy`` falling when no entry is read out: the cycle
#: after the setup stages (nothing enters the memory's read stages)
READOUT_EMPTY = READOUT_SETUP + 1


def write_cycles(cfg: DesignConfig, tokens: int) -> list[list[int]]:
    """Exact no-stall schedule: the cycle of each token's ``k`` queue writes."""
    return [writes for _, writes in fed_schedule(cfg, tokens)]


def fed_schedule(cfg: DesignConfig, tokens: int,
                 offer: Callable[[int, int], int] | None = None) -> list[tuple[int, list[int]]]:
    """Per token, ``(cycle its last logit is accepted, cycles of its k queue writes)`` when its
    logits are offered back to back from cycle ``offer(j, previous)`` on (``previous``: the
    cycle the previous token's last logit was accepted, -1 for the first; default: always
    offered). A feeder that holds one token's logits at a time (the MoE engine's logit
    serialiser) makes ``offer`` depend on ``previous``."""
    m = cfg.model
    r, k = m.router_outputs, m.top_k
    offer = offer or (lambda j, previous: 0)
    out: list[tuple[int, list[int]]] = []
    pipe = softmax.Pipeline(cfg)
    previous, rows = -1, []
    for j in range(tokens):
        arrival = offer(j, previous)
        if m.gating == "softmax_topk":
            row = pipe.row(r, arrival)
            previous = row.last_in
            out.append((previous, [row.last_out + TOPK_INPUT_DELAY + 1 + WRITE_DELAY + s
                                   for s in range(k)]))
            continue
        # topk_softmax: the scan takes one logit per cycle; a token's last logit waits for the
        # previous token's k logits to have entered the softmax (same cycle allowed)
        start = max(previous + 1, arrival)
        last_logit = start + r - 1
        if rows:
            last_logit = max(last_logit, rows[-1].last_in)
        rows.append(pipe.row(k, arrival=last_logit + 1))
        previous = last_logit
        out.append((previous, [rows[-1].first_out + WRITE_DELAY + s for s in range(k)]))
    return out


def latency(cfg: DesignConfig) -> int:
    """Cycles from a lone token's first logit accepted to its first queue write."""
    return write_cycles(cfg, 1)[0][0]


def cycles(cfg: DesignConfig, tokens: int) -> int:
    """Cycles for ``tokens`` tokens, first logit accepted (cycle 0) through the last queue write
    inclusive, with no stalls. Zero tokens take 0 cycles."""
    if tokens <= 0:
        return 0
    return write_cycles(cfg, tokens)[-1][-1] + 1


def interval(cfg: DesignConfig) -> float:
    """Steady-state cycles per token (measured over a long run of the exact schedule)."""
    n = 64
    return (cycles(cfg, 2 * n) - cycles(cfg, n)) / n


def readout_cycles(cfg: DesignConfig, entries: int) -> int:
    """Cycles from the flush handshake (cycle 0) until the router is idle again: the first entry
    is valid in cycle :data:`READOUT_FIRST`, one entry per cycle follows (empty experts cost
    nothing), and ``busy`` falls the cycle after the last entry leaves. With no entries,
    ``busy`` falls in cycle :data:`READOUT_EMPTY`."""
    return entries + READOUT_FIRST if entries else READOUT_EMPTY


def layer_cycles(cfg: DesignConfig, tokens: int, entries: int) -> int:
    """A whole layer: all tokens routed, then the flush (offered as soon as possible) and the
    read-out of ``entries`` queue entries."""
    return cycles(cfg, tokens) + readout_cycles(cfg, entries)
