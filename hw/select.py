"""One multiplexer over a list of equally wide values, picked by an index signal."""

from __future__ import annotations

from amaranth import Cat, Value


def select(elements: list[Value], index: Value) -> Value:
    """``elements[index]`` as one multiplexer of equally wide values (an index past the last
    element gives don't-care bits; ``index`` may be zero bits wide: one element)."""
    if len(elements) == 1:
        return elements[0]
    width = len(Value.cast(elements[0]))
    return Cat(*elements).word_select(index, width)
