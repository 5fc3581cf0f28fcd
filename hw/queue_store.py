"""The engine's queue store: the router's read-out (per-expert token queues) kept on chip so the
controller can replay an expert's ``(token, gate)`` entries twice, as the gather front end's
token ids and as the scatter back end's routes."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from hw.expert_queues import entry_layout, gate_shape
from moeaccel.config import DesignConfig
from sim.timing.queue_store import READ_STAGES  # noqa: F401  (the timing the RTL implements)


class QueueLayouts:
    """* ``entry``: ``token`` and ``gate`` (as :func:`hw.expert_queues.entry_layout`);
    * ``read``: a replay command: ``queue`` (1: entries ``start .. start+count-1`` of the store;
      0: the identity queue, tokens ``0 .. count-1`` with gate 1.0), ``start``, ``count``;
    * ``expert``: one row of the table of non-empty experts: ``expert``, ``start``, ``count``."""

    def __init__(self, cfg: DesignConfig):
        m = cfg.model
        entries = m.tokens * m.top_k
        self.entries = entries
        full = entry_layout(cfg)
        self.entry = data.StructLayout({"token": unsigned(bits_for(m.tokens)),
                                        "gate": gate_shape(cfg)})
        index = unsigned(bits_for(entries))
        self.read = data.StructLayout({"queue": 1, "start": index, "count": index})
        self.expert = data.StructLayout({"expert": full["expert"].shape, "start": index,
                                         "count": index})


class _Replay(wiring.Component):
    """One replay port: a ``cmd`` then ``count`` entries on ``o``, one per cycle when ready (one
    read stage: the store, a LUT RAM, is read asynchronously at ``rd_addr`` and the entry
    registered, so ``o`` is flip-flops and nothing else, not a block RAM's slow unregistered
    output nor a multiplexer: the gather's row-base multiplier and the scatter's take it
    straight into their input registers; the identity queue's entry is chosen before that
    register). ``rd_addr`` is itself a register (``start`` loaded with the command, +1 per entry
    issued), so the read runs from flip-flops through the LUT RAM into the entry register with
    no adder before it.

    With ``skid`` (the ``tokens`` port: the gather's ``token.ready`` is a long combinational
    term), ``o.ready`` never reaches the read address nor the issue logic: an entry is issued
    whenever the one-entry skid register (``kept``, the store's read as it was, and the index it
    was read at) is empty, a flip-flop. An entry issued while ``o`` refuses its beat is kept
    there and goes out next, and no entry is issued until it has. The entry register takes the
    store's read through one multiplexer, the kept or identity entry being chosen beside it from
    flip-flops. ``o`` shows the same beats in the same cycles as without the skid (the entry
    register issued by ``o.ready`` directly), and ``cmd.ready`` (idle and nothing kept) rises in
    the same cycle, so the skid costs no cycle."""

    def __init__(self, cfg: DesignConfig, depth: int, skid: bool = False):
        self.cfg, self.skid = cfg, skid
        lay = QueueLayouts(cfg)
        super().__init__({
            "cmd": In(stream.Signature(lay.read)),
            "o": Out(stream.Signature(lay.entry)),
            "rd_addr": Out(range(depth)), "rd_data": In(lay.entry),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        assert READ_STAGES == 1
        one = 1 << self.cfg.hardware.softmax.prob_frac_bits
        busy = Signal()
        command = Signal.like(self.cmd.p, reset_less=True)
        index = Signal.like(command.count, reset_less=True)
        # the read address ``start + index`` kept in its own register (stepped with ``index``),
        # so the LUT RAM's read starts at flip-flops, not after an adder
        addr = Signal.like(self.rd_addr, reset_less=True)
        data_r = Signal.like(self.rd_data, reset_less=True)

        def identity(i):                                    # the identity queue's entry ``i``
            e = Signal.like(self.rd_data)
            m.d.comb += [e.token.eq(i), e.gate.eq(one)]
            return e
        advance = ~self.o.valid | self.o.ready
        # the skid: the store's read and the index of an entry issued but refused
        kept = Signal.like(self.rd_data, reset_less=True)
        kept_index = Signal.like(index, reset_less=True)
        kept_valid = Signal()
        issue = Signal()
        m.d.comb += [issue.eq(busy & ~kept_valid if self.skid else busy & advance),
                     self.cmd.ready.eq(~busy & ~kept_valid), self.rd_addr.eq(addr)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [busy.eq(1), command.eq(self.cmd.p), index.eq(0), addr.eq(self.cmd.p.start)]
        with m.If(issue):
            m.d.sync += [index.eq(index + 1), addr.eq(addr + 1)]
            with m.If(index == command.count - 1):
                m.d.sync += busy.eq(0)
        # the entry register's input: the store's read, or else a choice among flip-flops
        from_store = Signal()
        other = Signal.like(self.rd_data)
        if self.skid:
            with m.If(issue):
                m.d.sync += [kept.eq(self.rd_data), kept_index.eq(index)]
            with m.If(advance):
                m.d.sync += kept_valid.eq(0)
            with m.Elif(issue):
                m.d.sync += kept_valid.eq(1)
            m.d.comb += [from_store.eq(command.queue & ~kept_valid),
                         other.eq(Mux(kept_valid, Mux(command.queue, kept, identity(kept_index)),
                                      identity(index)))]
        else:
            m.d.comb += [from_store.eq(command.queue), other.eq(identity(index))]
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(issue | kept_valid),
                         data_r.eq(Mux(from_store, self.rd_data, other))]
        m.d.comb += self.o.p.eq(data_r)
        return m


class QueueStore(wiring.Component):
    """Stores the router's read-out (``i``: :func:`hw.expert_queues.entry_layout` beats, taken
    one per cycle) in arrival order, and a table of the non-empty experts in order (``table``,
    the first ``active`` rows valid). ``clear`` (a pulse) empties it for a new layer.
    Two replay ports, ``tokens`` and ``routes`` (commands ``tokens_cmd``/``routes_cmd``), read
    the store independently.

    Members
    -------
    i : In(stream of entry_layout)
    clear : In(1)
    active : Out, non-empty experts stored
    table : Out(ArrayLayout(QueueLayouts.expert, experts))
    tokens_cmd, routes_cmd : In(stream of ``QueueLayouts.read``)
    tokens, routes : Out(stream of ``QueueLayouts.entry``)
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.layouts = lay = QueueLayouts(cfg)
        e = cfg.model.experts
        super().__init__({
            "i": In(stream.Signature(entry_layout(cfg))),
            "clear": In(1),
            "active": Out(range(e + 1)),
            "table": Out(data.ArrayLayout(lay.expert, e)),
            "tokens_cmd": In(stream.Signature(lay.read)),
            "routes_cmd": In(stream.Signature(lay.read)),
            "tokens": Out(stream.Signature(lay.entry)),
            "routes": Out(stream.Signature(lay.entry)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        lay, e = self.layouts, self.cfg.model.experts
        # LUT RAM (asked for: Yosys would otherwise fold the replays' entry registers into a block
        # RAM's read ports, whose unregistered output is slow)
        m.submodules.mem = mem = Memory(shape=lay.entry, depth=lay.entries, init=[],
                                        attrs={"ram_style": "distributed"})
        wp = mem.write_port()
        # cleared by ``clear`` or by ``wipe`` (the first cycle after a reset) rather than by the
        # reset itself, which then reaches one flip-flop here instead of a LUT per register
        # merging it with ``clear``; the table is data (no reset: rows past ``active`` are unused)
        wipe = Signal(init=1)
        m.d.sync += wipe.eq(0)
        written = Signal(range(lay.entries + 1), reset_less=True)
        new_expert = Signal(reset_less=True)   # the next entry starts an expert's queue
        active = Signal(range(e + 1), reset_less=True)
        table = Signal(data.ArrayLayout(lay.expert, e), reset_less=True)
        m.d.comb += [self.active.eq(active), self.table.eq(table)]
        take = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(1), wp.en.eq(take), wp.addr.eq(written),
                     wp.data.token.eq(self.i.p.token), wp.data.gate.eq(self.i.p.gate)]
        with m.If(take):
            m.d.sync += [written.eq(written + 1), new_expert.eq(self.i.p.last)]
            with m.If(new_expert):
                for x in range(e):
                    with m.If(active == x):
                        m.d.sync += [table[x].expert.eq(self.i.p.expert),
                                     table[x].start.eq(written),
                                     table[x].count.eq(self.i.p.count)]
                m.d.sync += active.eq(active + 1)
        with m.If(self.clear | wipe):
            m.d.sync += [written.eq(0), new_expert.eq(1), active.eq(0)]

        for name in ("tokens", "routes"):
            replay = _Replay(self.cfg, lay.entries, skid=name == "tokens")
            m.submodules[name] = replay
            rp = mem.read_port(domain="comb")        # LUT RAM: 2 read ports of T*top_k entries
            m.d.comb += [rp.addr.eq(replay.rd_addr), replay.rd_data.eq(rp.data)]
            wiring.connect(m, wiring.flipped(getattr(self, f"{name}_cmd")), replay.cmd)
            wiring.connect(m, replay.o, wiring.flipped(getattr(self, name)))
        return m
