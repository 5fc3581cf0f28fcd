"""Token tiles of a GEMM's output rows, as :class:`hw.compute_unit.ComputeUnit` emits them
(``rows`` tokens per tile, the last tile partial): the arithmetic the blocks that follow the rows
(scatter, hidden writer) keep in registers."""

from __future__ import annotations

from amaranth import Mux, Value
from amaranth.hdl import ValueLike


def last_row(count: ValueLike, tile_end: ValueLike) -> Value:
    """The last row index of the token tile that ends before ``tile_end`` (its first row plus
    ``rows``) in a GEMM of ``count`` rows: ``min(count, tile_end) - 1``."""
    count, tile_end = Value.cast(count), Value.cast(tile_end)
    return Mux(count <= tile_end, count, tile_end) - 1
