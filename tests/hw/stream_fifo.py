"""A test-only DUT for the stream layer: a FIFO with stream ports and a structured payload.

Not part of the accelerator. It exists so ``tests/hw/test_streams_layer.py`` can prove the shared
driver/monitor/scoreboard (``tests/hw/streams.py``) and the runner (``tests/hw/runner.py``) on a
block whose correct output is trivially known: every item that goes in comes out, unchanged and in
order.

The payload mixes the shapes real blocks use: an unsigned sequence tag, a signed vector of
``hardware.compute_unit.cols`` lanes of ``hardware.compute_unit.operand_bits`` (an
``ArrayLayout`` inside a ``StructLayout``), and a one-bit ``last`` flag.
"""

from __future__ import annotations

from amaranth import Module, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from moeaccel.config import DesignConfig

#: Width of the sequence tag: enough to number the items of a long stress run.
TAG_BITS = 16


def item_layout(cfg: DesignConfig) -> data.StructLayout:
    """The FIFO's payload layout under ``cfg``."""
    cu = cfg.hardware.compute_unit
    return data.StructLayout({
        "tag": unsigned(TAG_BITS),
        "vec": data.ArrayLayout(signed(cu.operand_bits), cu.cols),
        "last": unsigned(1),
    })


class StreamFifo(wiring.Component):
    """A ``depth``-entry FIFO between two streams of :func:`item_layout` items.

    Members
    -------
    i : In(stream.Signature(item_layout(cfg)))
        Items in; ready while the FIFO has room.
    o : Out(stream.Signature(item_layout(cfg)))
        The same items out, in order.

    Timing: latency 2 cycles from an accepted input to the same item valid at ``o`` when the FIFO
    was empty (``SyncFIFOBuffered`` adds an output register); throughput 1 item per cycle.
    """

    #: cycles from an input beat to the same item's output beat, FIFO empty and output ready
    LATENCY = 2

    def __init__(self, cfg: DesignConfig, depth: int = 4):
        self.depth = depth
        layout = item_layout(cfg)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(
            width=self.i.payload.shape().size, depth=self.depth)
        m.d.comb += [
            queue.w_data.eq(self.i.payload),
            queue.w_en.eq(self.i.valid),
            self.i.ready.eq(queue.w_rdy),
            self.o.payload.eq(queue.r_data),
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
        ]
        return m
