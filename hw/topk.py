"""Streaming top-k selector: one value per beat in, the ``k`` best (index, value) out.

Exactly :func:`golden.router.topk`: the ``k`` largest values of a row, largest first; equal
values are ordered by lower index first (an arriving value must be strictly larger to pass an
entry that arrived earlier). Rows have a fixed length, so the row's end is a registered count,
not a flag of the input beat: nothing of the payload reaches ``i.ready``.
"""

from __future__ import annotations

from amaranth import Cat, Module, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2


def value_layout(value_shape: Shape) -> data.StructLayout:
    """Input beat: one value of a row (a row is ``row_length`` beats)."""
    return data.StructLayout({"value": value_shape})


def slot_layout(row_length: int, value_shape: Shape) -> data.StructLayout:
    """Output beat: one of the ``k`` best of a row (its index in the row and its value), best
    first; ``last`` marks the ``k``-th."""
    return data.StructLayout({"index": unsigned(max(1, ceil_log2(row_length))),
                              "value": value_shape, "last": unsigned(1)})


def _ordered(x) -> Value:
    """``x`` as unsigned bits that compare (unsigned) in the order of ``x``'s values."""
    return x.as_unsigned() ^ (1 << (len(x) - 1)) if x.shape().signed else x.as_unsigned()


class TopK(wiring.Component):
    """Keeps a sorted list of the ``k`` best values seen in the current row (insertion, one value
    per cycle, all ``k`` comparisons in parallel); when a row's last value is taken the list is
    copied into an output register and sent as ``k`` beats, best first, while the next row is
    already being scanned.

    Parameters
    ----------
    row_length : values per row (at least ``k``; indices count from 0 and restart after the
        ``row_length``-th).
    k : values kept per row.
    value_shape : ``signed(n)`` or ``unsigned(n)``.

    Members
    -------
    i : In(stream.Signature(value_layout(value_shape)))
        Values, ``row_length`` per row; ready every cycle, except that a row's last value waits
        while the previous row's ``k`` beats have not all left (it may go in the cycle the final
        one leaves). ``ready`` is a function of registers only.
    o : Out(stream.Signature(slot_layout(row_length, value_shape)))
        ``k`` beats per row.

    Timing: a row's first output beat is valid the cycle after its last value is accepted; one
    beat per cycle after that. Throughput: one value per cycle when ``row_length >= k`` and the
    output is always ready.
    """

    def __init__(self, row_length: int, k: int, value_shape: Shape):
        if not 1 <= k <= row_length:
            raise ValueError(f"TopK needs 1 <= k <= row_length, got k={k}, row_length={row_length}")
        self.row_length = row_length
        self.k = k
        self.value_shape = Shape.cast(value_shape)
        super().__init__({
            "i": In(stream.Signature(value_layout(self.value_shape))),
            "o": Out(stream.Signature(slot_layout(row_length, self.value_shape))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        k = self.k
        ishape = unsigned(max(1, ceil_log2(self.row_length)))
        vshape = self.value_shape

        def slot_regs(prefix: str) -> tuple[list[Signal], list[Signal], list[Signal]]:
            return ([Signal(vshape, name=f"{prefix}_value{j}") for j in range(k)],
                    [Signal(ishape, name=f"{prefix}_index{j}") for j in range(k)],
                    [Signal(name=f"{prefix}_full{j}") for j in range(k)])

        value, index, full = slot_regs("best")          # the current row's sorted list
        o_value, o_index, _ = slot_regs("out")          # the finished row being sent
        position = Signal(ishape)                        # index of the next value in the row
        last = Signal(init=self.row_length == 1)         # position == row_length - 1
        # its complement, a second flip-flop (stored inverted so synthesis keeps both): ``last``
        # loads the list's wide enables, ``more`` only the handshake and ``busy``, so the
        # ready logic starts at a lightly loaded register
        more = Signal(init=self.row_length != 1)
        busy = Signal()                                  # output register holds a row
        slot = Signal(range(k))                          # output beat being offered
        final = Signal(init=k == 1)                      # slot == k - 1 (registered)

        # insertion of the offered value: entry j stays if it is full and at least as large (it
        # arrived earlier, so it wins ties: one carry chain with ``full`` as its top bit, as the
        # flags are cleared when a row ends); the first entry that does not stay takes the new
        # value and the rest shift down by one
        v = self.i.payload.value
        stays = [Signal(name=f"stays{j}") for j in range(k)]
        new_value, new_index, new_full = slot_regs("ins")
        for j in range(k):
            m.d.comb += stays[j].eq(Cat(_ordered(value[j]), full[j]) >= Cat(_ordered(v), 1))
            with m.If(stays[j]):
                m.d.comb += [new_value[j].eq(value[j]), new_index[j].eq(index[j]),
                             new_full[j].eq(1)]
            with m.Elif(stays[j - 1] if j else 1):
                m.d.comb += [new_value[j].eq(v), new_index[j].eq(position), new_full[j].eq(1)]
            with m.Else():
                if j:
                    m.d.comb += [new_value[j].eq(value[j - 1]), new_index[j].eq(index[j - 1]),
                                 new_full[j].eq(full[j - 1])]

        final_leaves = self.o.ready & final
        m.d.comb += self.i.ready.eq(more | ~busy | final_leaves)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [slot.eq(slot + 1), final.eq((slot == k - 2) if k > 1 else 1)]
            with m.If(final):
                m.d.sync += [busy.eq(0), slot.eq(0), final.eq(k == 1)]

        with m.If(self.i.valid & self.i.ready & ~more):
            m.d.sync += [busy.eq(1), slot.eq(0), final.eq(k == 1)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(last):
                m.d.sync += [position.eq(0), last.eq(self.row_length == 1),
                             more.eq(self.row_length != 1)]
                m.d.sync += [o_value[j].eq(new_value[j]) for j in range(k)]
                m.d.sync += [o_index[j].eq(new_index[j]) for j in range(k)]
                m.d.sync += [full[j].eq(0) for j in range(k)]
            with m.Else():
                m.d.sync += [position.eq(position + 1), last.eq(position == self.row_length - 2),
                             more.eq(position != self.row_length - 2)]
                m.d.sync += [value[j].eq(new_value[j]) for j in range(k)]
                m.d.sync += [index[j].eq(new_index[j]) for j in range(k)]
                m.d.sync += [full[j].eq(new_full[j]) for j in range(k)]

        m.d.comb += [
            self.o.valid.eq(busy),
            self.o.payload.last.eq(final),
        ]
        with m.Switch(slot):
            for j in range(k):
                with m.Case(j):
                    m.d.comb += [self.o.payload.value.eq(o_value[j]),
                                 self.o.payload.index.eq(o_index[j])]
        return m
