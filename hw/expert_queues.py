"""Per-expert token queues: the router's output memory (expert-by-expert scheduling).

Exactly :func:`golden.router.build_queues`: slots arrive in token order, then slot order; a slot
naming a null expert (``>= experts``) is counted and not stored; a slot whose expert already
holds ``model.expert_capacity`` tokens is counted as dropped; otherwise ``(token, gate)`` is
appended to that expert's queue.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.softmax import Formats
from hw.block_ram import BlockRam
from hw.skid_buffer import SkidBuffer
from moeaccel.config import DesignConfig
from sim.timing import router as timing


#: experts per group of the read-out's next-expert search (a LUT4's inputs)
GROUP = 4
assert GROUP & (GROUP - 1) == 0, "an expert's index is Cat(its place in the group, the group)"
#: bits of a count of a group's set bits (0 .. GROUP)
COUNT_BITS = ceil_log2(GROUP + 1)


def _bits(n: int) -> int:
    """Bits of an unsigned counter that holds 0..n."""
    return max(1, (n).bit_length())


def _index_bits(n: int) -> int:
    """Bits of an index 0..n-1."""
    return max(1, ceil_log2(n))


def gate_shape(cfg: DesignConfig) -> unsigned:
    """A gate: unsigned probability with ``prob_frac_bits`` fraction bits, 0 ..= 1.0."""
    return unsigned(Formats(cfg.hardware.softmax).prob_bits)


def slot_layout(cfg: DesignConfig) -> data.StructLayout:
    """One routing slot of a token: router output chosen (expert or null expert) and its gate;
    ``last`` marks the token's final slot."""
    return data.StructLayout({"expert": unsigned(_index_bits(cfg.model.router_outputs)),
                              "gate": gate_shape(cfg), "last": unsigned(1)})


def entry_layout(cfg: DesignConfig) -> data.StructLayout:
    """One queue entry as read out: the expert, its queue length, the token and its gate.
    ``last`` marks the expert's final entry, ``end`` the final entry of the layer."""
    m = cfg.model
    return data.StructLayout({
        "expert": unsigned(_index_bits(m.experts)),
        "count": unsigned(_bits(m.expert_capacity)),
        "token": unsigned(_index_bits(m.tokens)),
        "gate": gate_shape(cfg),
        "last": unsigned(1),
        "end": unsigned(1),
    })


def flush_layout() -> data.StructLayout:
    """The flush command: ``discard`` ends the layer without reading the queues out."""
    return data.StructLayout({"discard": unsigned(1)})


def status_layout(cfg: DesignConfig) -> data.StructLayout:
    """Counters of the last flushed layer: tokens, slots dropped by capacity, null-expert slots."""
    slots = _bits(cfg.model.tokens * cfg.model.top_k)
    return data.StructLayout({"tokens": unsigned(_bits(cfg.model.tokens)),
                              "dropped": unsigned(slots), "null_slots": unsigned(slots)})


def readout_members(cfg: DesignConfig) -> dict:
    """The flush / read-out side of the queues, shared by :class:`ExpertQueues` and the router
    that wraps them: ``flush`` in, ``o`` entries out, ``status`` and ``busy``."""
    return {
        "flush": In(stream.Signature(flush_layout())),
        "o": Out(stream.Signature(entry_layout(cfg))),
        "status": Out(status_layout(cfg)),
        "busy": Out(1),
    }


class ExpertQueues(wiring.Component):
    """Queue memory of ``experts`` queues of ``expert_capacity`` ``(token, gate)`` entries (queue
    ``e`` at address ``e << ceil_log2(expert_capacity)``, so no address needs an adder), one
    length counter per expert, dropped/null counters; written one slot per cycle, then read out
    expert by expert after a flush.

    A layer holds at most ``model.tokens`` tokens (the token counter's range).

    Members
    -------
    i : In(stream.Signature(slot_layout(cfg)))
        Slots, one per cycle; not ready while a read-out is in progress.
    flush : In(stream.Signature(flush_layout()))
        Ends the layer: accepted when no read-out is in progress and no slot is offered (the
        caller makes sure the layer's slots are all in). Latches :attr:`status` and starts the
        read-out (unless ``discard``); the queues are empty for the next layer afterwards.
    o : Out(stream.Signature(entry_layout(cfg)))
        After a flush: for each non-empty expert in expert order, its entries in token order.
        Nothing is sent for a layer with no entries.
    status : Out(status_layout(cfg))
        Counters of the last flushed layer.
    busy : Out(1)
        A read-out is in progress.

    Timing: a slot is counted (its expert's length, the dropped and null counters)
    ``sim.timing.router.WRITE_DELAY`` (1) cycle after it is accepted (it is registered first,
    so no path runs from the slot's source into the memory), and written to the memory the
    cycle after that (not observable: the read-out starts later). After the
    flush handshake (cycle 0) the first entry is valid in cycle
    ``sim.timing.router.READOUT_FIRST`` (4) and, with ``o`` always ready, one entry per cycle
    follows (empty experts are skipped at no cost); ``busy`` falls the cycle after the final
    entry left (with no entries, in cycle ``READOUT_EMPTY``, 3). Read-out pipeline: the
    registered handshake (``start``, cycle 1) -> generator registers (entry, its expert's
    length, "last of expert", next non-empty expert) -> the memory read (``READOUT_READ_STAGES``
    = 2: a :class:`hw.block_ram.BlockRam` whose second stage is the block RAMs' own output
    register, so no path starts at a block RAM's slow unregistered read data) with the entry's
    metadata registered beside it -> a zero-latency skid buffer
    (:class:`hw.skid_buffer.SkidBuffer`), so ``o.ready`` only reaches the skid buffer and
    ``busy``.
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        super().__init__({"i": In(stream.Signature(slot_layout(cfg))), **readout_members(cfg)})

    def elaborate(self, platform) -> Module:
        m = Module()
        model = self.cfg.model
        n_exp, cap = model.experts, model.expert_capacity
        entry = data.StructLayout({"token": unsigned(_index_bits(model.tokens)),
                                   "gate": gate_shape(self.cfg)})
        # expert e's queue starts at e << abits: the address is Cat(index, expert), no adder
        abits = ceil_log2(cap)
        # writing and reading never overlap (``i.ready`` is low while reading): no collision
        # logic; the read goes through the block RAMs' output registers (READ_STAGES = 2)
        m.submodules.mem = mem = BlockRam(width=entry.size, depth=n_exp << abits,
                                          read_stages=timing.READOUT_READ_STAGES)
        wr = mem.write

        # The counters and flags below are cleared by logic (after a read-out, at a flush) and
        # by ``wipe``, high in the first cycle after a reset, instead of by the reset itself: the
        # reset then reaches one flip-flop here, not a LUT merging it with the clears in front
        # of every counter bit (the block's longest reset path).
        wipe = Signal(init=1)
        m.d.sync += wipe.eq(0)
        counts = Array(Signal(range(cap + 1), name=f"count{e}", reset_less=True)
                       for e in range(n_exp))
        nonempty = Signal(n_exp, reset_less=True)       # counts[e] != 0
        single = Signal(n_exp, reset_less=True)         # counts[e] == 1
        full = Signal(n_exp, reset_less=True)           # counts[e] == cap
        # the two lowest non-empty experts, kept up to date by the writes (for the read-out)
        first = Signal(range(n_exp), reset_less=True)
        second = Signal(range(n_exp), reset_less=True)
        has_first, has_second = Signal(reset_less=True), Signal(reset_less=True)
        token = Signal(range(model.tokens + 1), reset_less=True)
        slots = status_layout(self.cfg)
        dropped = Signal(slots["dropped"].shape, reset_less=True)
        nulls = Signal(slots["null_slots"].shape, reset_less=True)
        reading = Signal()
        # the flush handshake is registered (``start``) before it loads the read-out: the
        # handshake's ready/valid logic (through the router and the controller) reaches only
        # these two flip-flops, not the read-out generator's loads
        start = Signal()
        discard = Signal(reset_less=True)
        m.d.comb += self.busy.eq(reading)

        # ---- writing (two stages) ----------------------------------------------------------
        # 1: the accepted slot is registered (its expert also one-hot); 2: the write at
        #    Cat(count, expert) and the counters, each expert's flags and count updated on its
        #    own (no multiplexer in front of a counter)
        s = self.i.payload
        accept = self.i.valid & self.i.ready
        pend = Signal()                                  # stage 2 holds a slot
        p_expert = Signal.like(s.expert, reset_less=True)
        p_hot = Signal(n_exp, reset_less=True)           # one-hot p_expert (0: null expert)
        p_gate = Signal.like(s.gate, reset_less=True)
        p_last, p_null = Signal(reset_less=True), Signal(reset_less=True)
        m.d.comb += self.i.ready.eq(~reading)
        m.d.sync += [pend.eq(accept), p_expert.eq(s.expert), p_gate.eq(s.gate),
                     p_last.eq(s.last), p_null.eq(s.expert >= n_exp)]
        m.d.sync += [p_hot[e].eq(s.expert == e) for e in range(n_exp)]
        count = counts[p_expert]
        write = Signal()
        m.d.comb += write.eq(pend & ~p_null & ((full & p_hot) == 0))
        # the memory write itself is registered once more (its address needs the expert's
        # count, a 16-way multiplexer): it lands in the cycle the flush may be accepted at the
        # earliest, and the read-out reads from the cycle after the registered handshake on
        wr_en = Signal()
        wr_addr = Signal.like(wr.addr, reset_less=True)
        wr_data = Signal(entry, reset_less=True)
        m.d.sync += [wr_en.eq(write), wr_addr.eq(Cat(count[:abits], p_expert)),
                     wr_data.token.eq(token), wr_data.gate.eq(p_gate)]
        m.d.comb += [wr.en.eq(wr_en), wr.addr.eq(wr_addr), wr.data.eq(wr_data.as_value())]
        with m.If(pend):
            with m.If(p_null):
                m.d.sync += nulls.eq(nulls + 1)
            with m.Elif(~write):
                m.d.sync += dropped.eq(dropped + 1)
            with m.If(p_last):
                m.d.sync += token.eq(token + 1)
        for e in range(n_exp):
            # p_hot is zero for a null expert: each counter's enable is its own expert's
            # flags, not the write decision (an OR over all experts)
            with m.If(pend & p_hot[e] & ~full[e]):
                m.d.sync += [counts[e].eq(counts[e] + 1), nonempty[e].eq(1),
                             single[e].eq(~nonempty[e]), full[e].eq(counts[e] == cap - 1)]
        # an expert's first entry: it may become the first or second non-empty expert (a full
        # expert is non-empty, so this does not wait for the capacity check)
        with m.If(pend & ~p_null & ((nonempty & p_hot) == 0)):
            with m.If(~has_first | (p_expert < first)):
                m.d.sync += [first.eq(p_expert), has_first.eq(1),
                             second.eq(first), has_second.eq(has_first)]
            with m.Elif(~has_second | (p_expert < second)):
                m.d.sync += [second.eq(p_expert), has_second.eq(1)]

        # ---- read-out --------------------------------------------------------------------
        # Generator: the entry (expert, index) read in this cycle and everything its output
        # beat needs, all in registers: the expert's length, ``index + 2`` (``index2``: the
        # next entry is the expert's last when it equals the length; counting up, moving to an
        # expert loads only its length, no second count), whether this is the expert's last
        # entry, and a lookahead: the next non-empty expert (``nxt``, ``has_nxt``) and the
        # non-empty experts above it (in groups of GROUP: ``g_rest``, with each group's
        # registered "any" and lowest expert). Moving to the next expert only copies
        # registers; the search works on the groups for the expert after that, so empty
        # experts cost nothing.
        expert = Signal(range(n_exp))
        index = Signal(max(1, abits))
        length = Signal(range(cap + 1))
        index2 = Signal(range(cap + 2))
        is_last = Signal()
        nxt = Signal(range(n_exp))
        has_nxt = Signal()
        generating = Signal()
        # ``rest`` is kept in groups of GROUP experts (a LUT4's inputs), each with registered
        # look-aheads: the group is non-empty (``g_any``) and its lowest expert (``g_low``). The
        # next ``nxt`` is then the lowest non-empty group's ``g_low`` (two LUT levels from
        # registers), and a move updates only that group, from its own four bits.
        n_groups = -(-n_exp // GROUP)
        g_rest = [Signal(GROUP, name=f"rest{g}", reset_less=True) for g in range(n_groups)]
        g_any = Signal(n_groups, reset_less=True)
        g_low = [Signal(range(GROUP), name=f"rest{g}_low", reset_less=True)
                 for g in range(n_groups)]

        def lowest(mask: Value, n: int, skip: int = 0) -> Signal:
            """Index of the lowest set bit of ``mask`` (of ``n`` bits) after its ``skip``
            lowest set bits (0 if none)."""
            found = Signal(range(n), name=f"lowest{skip}")
            m.d.comb += found.eq(0)
            for e in reversed(range(n)):
                with m.If(mask[e] & (Cat(mask[:e]) == 0 if skip == 0 else
                                     sum(mask[:e], Const(0, COUNT_BITS)) == skip)):
                    m.d.comb += found.eq(e)
            return found

        group = lowest(g_any, n_groups)                 # the lowest non-empty group
        g_low2 = [lowest(r, GROUP, 1) for r in g_rest]  # each group's second expert
        rest_e = Cat(Array(g_low)[group], group)[:len(nxt)]
        # the mask of experts after ``second``, as at ``start``: the counters and ``second``
        # hold still from the flush handshake to ``start``, so registered the cycle before, it
        # is the value at ``start``, which loads each group and its look-aheads from it
        init = Cat(*(nonempty[e] & has_second & (second < e) for e in range(n_exp)),
                   Const(0, n_groups * GROUP - n_exp))
        init_rest = [Signal(GROUP, name=f"init_rest{g}", reset_less=True)
                     for g in range(n_groups)]
        m.d.sync += [r.eq(init[g * GROUP:(g + 1) * GROUP]) for g, r in enumerate(init_rest)]
        init_any = Cat(r != 0 for r in init_rest)
        init_low = [lowest(r, GROUP) for r in init_rest]
        m.d.comb += self.flush.ready.eq(~reading & ~self.i.valid & ~pend)
        m.d.sync += start.eq(self.flush.valid & self.flush.ready)
        # the first expert's length, registered: the counters and ``first`` hold still from the
        # flush handshake (no slot pending) to ``start``, so this is counts[first] at ``start``
        # without the 16-way multiplexer in front of ``length``
        first_length = Signal.like(length, reset_less=True)
        m.d.sync += first_length.eq(counts[first])
        with m.If(self.flush.valid & self.flush.ready):
            m.d.sync += [reading.eq(1), discard.eq(self.flush.payload.discard)]
        with m.If(start):
            m.d.sync += [
                generating.eq(has_first & ~discard),
                expert.eq(first), index.eq(0), length.eq(first_length),
                index2.eq(2), is_last.eq(single.bit_select(first, 1)),
                nxt.eq(second), has_nxt.eq(has_second), g_any.eq(init_any),
                *(r.eq(i) for r, i in zip(g_rest, init_rest)),
                *(low.eq(i) for low, i in zip(g_low, init_low)),
                self.status.tokens.eq(token), self.status.dropped.eq(dropped),
                self.status.null_slots.eq(nulls),
                token.eq(0), dropped.eq(0), nulls.eq(0),
            ]

        # the memory's two read stages (the read, the block RAMs' output registers) with the
        # entry's metadata beside them, the second the output register, then a skid buffer:
        # ``o.ready`` reaches neither the generator nor the memory
        m.submodules.skid = skid = SkidBuffer(entry_layout(self.cfg))
        out = skid.i
        advance = ~out.valid | out.ready
        m.d.comb += [mem.read.addr.eq(Cat(index[:abits], expert)), mem.read.en.eq(advance)]
        read = Signal(entry)
        m.d.comb += [read.eq(mem.read.data),
                     out.payload.token.eq(read.token), out.payload.gate.eq(read.gate)]
        assert timing.READOUT_READ_STAGES == 2
        valid1 = Signal()
        meta1 = Signal(out.payload.shape(), reset_less=True)
        with m.If(advance):
            m.d.sync += [valid1.eq(generating), out.valid.eq(valid1)]
            m.d.sync += [meta1.expert.eq(expert), meta1.count.eq(length),
                         meta1.last.eq(is_last), meta1.end.eq(is_last & ~has_nxt)]
            m.d.sync += [out.payload.expert.eq(meta1.expert), out.payload.count.eq(meta1.count),
                         out.payload.last.eq(meta1.last), out.payload.end.eq(meta1.end)]
            with m.If(generating):
                with m.If(~is_last):
                    m.d.sync += [index.eq(index + 1), index2.eq(index2 + 1),
                                 is_last.eq(index2 == length)]
                with m.Else():
                    # the move to the next expert does not wait for ``has_nxt`` (its enable is
                    # one LUT of generating, is_last and the output stage's two flip-flops):
                    # after the final expert it loads don't-cares, as generating falls
                    m.d.sync += [expert.eq(nxt), index.eq(0), length.eq(counts[nxt]),
                                 index2.eq(2), is_last.eq(single.bit_select(nxt, 1)),
                                 nxt.eq(rest_e), has_nxt.eq(g_any != 0)]
                    for g, (r, low2) in enumerate(zip(g_rest, g_low2)):
                        # the group the new ``nxt`` (``rest_e``) comes from loses its lowest
                        # expert
                        with m.If(g_any[g] & (g_any[:g] == 0) if g else g_any[g]):
                            m.d.sync += [r.eq(r & (r - 1)), g_low[g].eq(low2),
                                         g_any[g].eq(sum(r, Const(0, COUNT_BITS)) >= 2)]
                    with m.If(~has_nxt):
                        m.d.sync += generating.eq(0)
        wiring.connect(m, skid.o, wiring.flipped(self.o))

        # the read-out ends when the generator is done and the last beat leaves ``o`` (from
        # the output register or the skid buffer); the counters are cleared for the next layer
        beats = Cat(out.valid, ~out.ready)           # output register, skid buffer full
        done = reading & ~start & ~generating & ~valid1 & \
            ((beats == 0) | ((beats != 0b11) & self.o.ready))
        with m.If(done):
            m.d.sync += reading.eq(0)
        with m.If(wipe | done):
            m.d.sync += [c.eq(0) for c in counts]
            m.d.sync += [nonempty.eq(0), single.eq(0), full.eq(0),
                         has_first.eq(0), has_second.eq(0)]
        with m.If(wipe):
            m.d.sync += [token.eq(0), dropped.eq(0), nulls.eq(0)]
        return m
