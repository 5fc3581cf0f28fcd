"""The shape every single-stream stage shares: one input stream and one output stream of the
same payload."""

from __future__ import annotations

from amaranth.hdl import ShapeLike
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class StreamStage(wiring.Component):
    """Base of the stages that pass ``i`` to ``o`` unchanged in content (only timing differs).

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape: ShapeLike):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})
