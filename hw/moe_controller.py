"""The MoE engine's controller: the layer's schedule as a one-hot state machine (IDLE, WAIT_WEIGHTS,
GEMM, FLUSH, DRAIN, READOUT) plus the weight prefetcher.

See :mod:`hw.moe_engine` for the schedule it implements and the counters it keeps.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, Signal, unsigned
from amaranth.lib import data
from amaranth.utils import bits_for

from moeaccel.weight_image import ImageLayout, buffer_slots
from moeaccel.config import DesignConfig
from hw.weight_stream import pass_flags

COUNTER_BITS = 32


def status_layout(cfg: DesignConfig) -> data.StructLayout:
    """The engine's counters of the last layer (see :mod:`hw.moe_engine`)."""
    m = cfg.model
    slots = bits_for(m.tokens * m.top_k)
    count = unsigned(COUNTER_BITS)
    return data.StructLayout({
        "cycles": count, "mac_steps": count, "ffn_cycles": count, "ffn_steps": count,
        "weight_wait": count, "dram_busy": count, "fetches": unsigned(16),
        "experts": unsigned(bits_for(m.experts + m.shared_experts)),
        "dropped": unsigned(slots), "null_slots": unsigned(slots),
    })


def start_layout(cfg: DesignConfig) -> data.StructLayout:
    """``task`` (which gate matrix) and ``clear`` (only read the output accumulators out and
    discard them: needed once after a reset in the middle of a layer)."""
    return data.StructLayout({"task": unsigned(bits_for(max(cfg.model.tasks - 1, 1))),
                              "clear": 1})


class MoeController(Elaboratable):
    """Drives the control streams of the engine's blocks (``engine`` holds them as attributes
    ``unit``, ``gather_x``, ``gather_h``, ``weights``, ``queues``, ``serialiser``, ``hidden``,
    ``scatter``, ``router``) and the engine's ``start``/``status``/``busy`` ports. It owns the
    ``act``/``token``/``out`` steering (``use_hidden``, ``dest``)."""

    def __init__(self, cfg: DesignConfig, engine):
        self.cfg = cfg
        self.e = engine
        self.use_hidden = Signal()     # act/token from gather_h (GEMM2), else gather_x
        self.use_x = Signal(init=1)    # ~use_hidden: a second flip-flop for the act payload
        #                                multiplexer's many selects (stored inverted, so that
        #                                synthesis keeps it apart from use_hidden)
        self.dest = Signal(2)          # unit out -> 0 serialiser, 1 hidden writer, 2 scatter

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, e = self.cfg, self.e
        model, cu = cfg.model, cfg.hardware.compute_unit
        img = ImageLayout.of(cfg)
        T, D, H, R = model.tokens, model.embed_dim, model.expert_hidden, model.router_outputs
        S, E = model.shared_experts, model.experts
        max_x = S + E
        slots = buffer_slots(cfg)
        matrices = 1 + 2 * max_x

        running = Signal()
        idle = Signal(init=1)                     # in IDLE, a register (start.ready)
        task = Signal.like(e.start.p.task)
        discard = Signal()
        experts = Signal(range(max_x + 1))        # experts to run (shared + non-empty routed)
        known = Signal(range(matrices + 1))       # matrices of the layer known so far
        fetch_n = Signal(range(matrices + 1))     # next matrix to fetch
        fetched = Signal(range(matrices + 1))     # matrices on chip (fetch done)
        used = Signal(range(matrices + 1))        # matrices streamed (slot free again)
        used_s = Signal(range(matrices + slots + 1), init=slots)   # used + slots
        f_x = Signal(range(max_x + 1))            # expert of the next fetch, W2 of it?
        f_second = Signal()
        g = Signal(range(matrices + 1))           # matrix of the current / next GEMM
        x = Signal(range(max_x + 1))              # its expert
        table = e.queues.table

        use_hidden, dest = self.use_hidden, self.dest
        # The schedule's state, one-hot, each state a flip-flop (so that no state decode sits in
        # front of the many loads a transition has): IDLE is ``idle``; GEMM is split by the kind
        # of GEMM (router, GEMM1, GEMM2: constant for the whole state), so that a GEMM's end
        # is one AND of its flag and the sink's handshake.
        states = {n: Signal(name=f"s_{n}") for n in
                  ("wait", "gemm_r", "gemm1", "gemm2", "flush", "drain", "readout")}
        in_gemm = Signal()                          # any of the GEMM states, a register

        # ---- prefetcher ----------------------------------------------------------------------
        def expert_record(index):                 # image record of expert `index`
            routed = Array(table[i].expert for i in range(E))[(index - S)[:bits_for(E - 1)]]
            return Mux(index < S, E + index, routed) if S else routed

        fcmd = e.weights.fetch_cmd
        is_gate = Signal(init=1)                  # fetch_n == 0, a register
        # every matrix address is a constant: a table indexed by (record, W2?) instead of a
        # multiply by the expert's size and two adds
        addr_width = len(fcmd.p.addr)
        matrix_addr = Array(Const(img.expert_base + r * img.expert_bytes + w2 * img.w1.bytes,
                                  addr_width)
                            for r in range(E + S) for w2 in (0, 1))
        # The address is registered, and so is the expert's image record before it (the queue
        # table's mux and the address table are not in series): ``f_x`` changes at a fetch
        # command and the fetcher is then busy for more than two cycles (the DRAM latency and
        # the matrix's beats), so the record and then the address are right before the next
        # command. The first routed expert's record is read from the table's row 0 (a fixed
        # index, no mux) instead: its fetch can come the cycle after the router drains, when the
        # table has just become final. The first command of a layer (the gate matrix) comes the
        # cycle after ``start``, so IDLE loads that address from the offered task every cycle.
        f_rec = Signal(range(E + S), reset_less=True)
        f_first_routed = Signal()                 # f_x == S, registered
        m.d.sync += [f_rec.eq(expert_record(f_x)), f_first_routed.eq(f_x == S)]
        record = Mux(f_first_routed, table[0].expert, f_rec) if E else f_rec
        f_addr = Mux(is_gate, task * img.gate.bytes, matrix_addr[Cat(f_second, record)])
        f_addr_r = Signal.like(fcmd.p.addr, reset_less=True)   # refreshed every cycle
        m.d.sync += f_addr_r.eq(f_addr)
        # ``fetch_ok`` (running, ``fetch_n < known`` and ``fetch_n < used + slots``) is a
        # register, so the command's valid, which the fetcher's write address and beat counter
        # follow, is one AND: it is the bounds' values of the next cycle. ``fetch_n`` never
        # passes either bound, so they are equality compares; a slot freed this cycle
        # (``streamed``) makes room, ``known`` is set at the start and when the router drains
        # (``fetch_ok`` is loaded there), and the cycle after a command the fetcher is busy
        # (``fetch_ok`` is cleared then, and recomputed from the new ``fetch_n``).
        fetch_ok = Signal()
        accept = fcmd.valid & fcmd.ready
        # (one expression, not a priority chain of the states' loads: IDLE offers the first
        # command after ``start`` unless clearing; DRAIN makes room for the routed experts)
        drain_go = Signal()
        m.d.comb += drain_go.eq(states["drain"] & ~e.router.busy)
        more = (fetch_n != known) | (drain_go & (e.queues.active != 0))
        # ``fetch_ok`` is the OR of two registers: the slot freed this cycle (``streamed``, the
        # stream's last handshake) is one AND in front of a register of its own, not the
        # start of the whole expression (weight_skid.full -> fetch_ok was 7.58 ns est.)
        go_on, ok_bounds, ok_freed = Signal(), Signal(), Signal()
        m.d.comb += [go_on.eq(~idle & running & more & ~accept), fetch_ok.eq(ok_bounds | ok_freed)]
        m.d.sync += [ok_bounds.eq(Mux(idle, e.start.valid & ~e.start.p.clear,
                                      go_on & (fetch_n != used_s))),
                     ok_freed.eq(go_on & e.weights.streamed)]
        m.d.comb += [
            fcmd.valid.eq(fetch_ok & ~e.weights.fetch_busy),
            fcmd.p.addr.eq(f_addr_r),
            fcmd.p.slot.eq(fetch_n[0] if slots == 2 else 0),
            fcmd.p.wide.eq(Mux(is_gate, img.gate.wide_words,
                               Mux(f_second, img.w2.wide_words, img.w1.wide_words))),
            fcmd.p.words.eq(Mux(is_gate, img.gate.weight_words,
                                Mux(f_second, img.w2.weight_words, img.w1.weight_words))),
        ]
        with m.If(accept):
            m.d.sync += [fetch_n.eq(fetch_n + 1), is_gate.eq(0)]
            with m.If(~is_gate):
                m.d.sync += f_second.eq(~f_second)
                with m.If(f_second):
                    m.d.sync += f_x.eq(f_x + 1)
        with m.If(e.weights.fetched):
            m.d.sync += fetched.eq(fetched + 1)
        with m.If(e.weights.streamed):
            m.d.sync += [used.eq(used + 1), used_s.eq(used_s + 1)]

        # ---- the current GEMM's parameters -------------------------------------------------
        # The expert's token count and queue start are registers, so the queue table's mux is
        # never in front of a command. They change only when ``x`` does: loaded with row 0 of the
        # table (a fixed index, no mux) when the router drains (the table is final that cycle,
        # before the first expert GEMM), and with the next expert's values the cycle ``x``
        # advances. The next expert's values are registered every cycle from ``x1`` (``x + 1``
        # as a register, so no adder precedes the table's mux): stable for the whole GEMM.
        shared = x < S
        count_width = range(T * model.top_k + 1)

        def first_queue():                        # queue_of(0) with the index a constant
            return (T, 0) if S else (table[0].count, table[0].start)

        count, start = Signal(count_width, reset_less=True), Signal(count_width, reset_less=True)
        next_count = Signal(count_width, reset_less=True)   # refreshed every cycle
        next_start = Signal(count_width, reset_less=True)
        x1 = Signal(range(max_x + 2), init=1)     # x + 1
        advance = Signal()                        # x advances this cycle
        # The table's multiplexer is pipelined (the routed index registered, then groups of 4
        # rows, then the group): ``x1`` changes at the end of a GEMM2 and the values are used at
        # the end of the next one, many more than three cycles later; the table is final when
        # the router drains, long before the first GEMM2 ends.
        sel = Signal(bits_for(E - 1), reset_less=True)
        sel_shared = Signal(reset_less=True)                # x1 < S
        m.d.sync += [sel.eq((x1 - S)[:len(sel)]), sel_shared.eq(x1 < S if S else 0)]
        groups = [list(range(E))[i:i + 4] for i in range(0, E, 4)]
        part = [(Signal(count_width, name=f"part_count{j}", reset_less=True),
                 Signal(count_width, name=f"part_start{j}", reset_less=True))
                for j in range(len(groups))]
        for (p_count, p_start), rows in zip(part, groups):
            low = sel[:2]
            m.d.sync += [p_count.eq(Array(table[i].count for i in rows)[low]),
                         p_start.eq(Array(table[i].start for i in rows)[low])]
        high = Signal(max(len(sel) - 2, 1), reset_less=True)
        part_shared = Signal(reset_less=True)
        m.d.sync += [high.eq(sel[2:] if len(sel) > 2 else 0), part_shared.eq(sel_shared)]
        m.d.sync += [next_count.eq(Mux(part_shared, T, Array(c for c, _ in part)[high])),
                     next_start.eq(Mux(part_shared, 0, Array(s for _, s in part)[high]))]
        with m.If(advance):
            m.d.sync += [count.eq(next_count), start.eq(next_start)]
        router_gemm = Signal(init=1)                # g == 0, a register
        second = ~g[0]                              # W2: matrices 2, 4, ...
        g_slot = g[0] if slots == 2 else 0
        header = Array(e.weights.header[s] for s in range(2))[g_slot]

        # pending handshakes of the GEMM being issued
        # (the gathers' each a flip-flop of its own: their valid is the flip-flop, no select)
        p_unit, p_gx, p_gh, p_ids, p_stream, p_scatter, p_routes = (
            Signal(name=f"p_{n}") for n in (
                "unit", "gather_x", "gather_h", "ids", "stream", "scatter", "routes"))
        unit_cmd, ids_cmd, s_cmd = e.unit.cmd, e.queues.tokens_cmd, e.weights.stream_cmd
        gx, gh = e.gather_x.cmd, e.gather_h.cmd
        sc_cmd, routes_cmd = e.scatter.cmd, e.queues.routes_cmd
        # The command payloads are registers, refreshed every cycle from ``g``, ``x`` and
        # ``count``: those change only on the way into WAIT_WEIGHTS (which lasts at least a
        # cycle), and the commands are offered from the next state, GEMM, so the payloads are
        # right when offered and no compare of ``g`` or ``x`` sits in front of a consumer's
        # command register.
        g_m, g_k, g_n = (Signal.like(unit_cmd.p.m, reset_less=True),
                         Signal.like(unit_cmd.p.k, reset_less=True),
                         Signal.like(unit_cmd.p.n, reset_less=True))
        with m.If(router_gemm):
            m.d.sync += [g_m.eq(T), g_k.eq(D), g_n.eq(R)]
        with m.Elif(second):
            m.d.sync += [g_m.eq(count), g_k.eq(H), g_n.eq(D)]
        with m.Else():
            m.d.sync += [g_m.eq(count), g_k.eq(D), g_n.eq(H)]
        # g_m's token-tile count == 1 / == 2 as registers beside it (the weight stream's pass
        # registers load them at its command: no compare of g_m in front of them)
        g_one, g_two = Signal(reset_less=True), Signal(reset_less=True)
        rows = cfg.hardware.compute_unit.rows
        t_one, t_two = pass_flags(T, rows)
        c_one, c_two = pass_flags(count, rows)
        m.d.sync += [g_one.eq(Mux(router_gemm, int(t_one), c_one)),
                     g_two.eq(Mux(router_gemm, int(t_two), c_two))]
        ids_queue, routes_queue = Signal(reset_less=True), Signal(reset_less=True)
        m.d.sync += [ids_queue.eq(~router_gemm & ~second & ~shared), routes_queue.eq(~shared)]
        # the hidden writer is armed the cycle after the GEMM's commands are decided (its first
        # row comes from the compute unit many cycles after the unit's command), with ``g_m``
        hidden_start = Signal()
        m.d.sync += hidden_start.eq(0)
        # the scatter's ``m`` likewise: the GEMM2's count from its WAIT_WEIGHTS until the scatter
        # takes its command, T at every other time (the read-out command's ``m``), so it is
        # already T on the way into READOUT (the end of a GEMM does not reach it)
        readout = Signal()
        sc_m = Signal.like(g_m, reset_less=True)
        waiting = states["wait"]
        gemm2 = second & ~router_gemm
        m.d.sync += sc_m.eq(Mux(gemm2 & (waiting | p_scatter), count, T))
        tiles = Mux(router_gemm, img.gate.tiles, Mux(second, img.w2.tiles, img.w1.tiles))
        words = Mux(router_gemm, img.gate.weight_words,
                    Mux(second, img.w2.weight_words, img.w1.weight_words))
        m.d.comb += [
            unit_cmd.valid.eq(p_unit),
            unit_cmd.p.m.eq(g_m), unit_cmd.p.k.eq(g_k), unit_cmd.p.n.eq(g_n),
            unit_cmd.p.multiplier.eq(header.multiplier), unit_cmd.p.shift.eq(header.shift),
            unit_cmd.p.wide.eq(router_gemm), unit_cmd.p.gelu.eq(~router_gemm & ~second),
            unit_cmd.p.act_multiplier.eq(header.act_multiplier),
            unit_cmd.p.act_shift.eq(header.act_shift),
            gx.valid.eq(p_gx), gh.valid.eq(p_gh),
            gx.p.m.eq(g_m), gx.p.k.eq(g_k), gx.p.n.eq(g_n),
            gh.p.m.eq(g_m), gh.p.k.eq(g_k), gh.p.n.eq(g_n),
            ids_cmd.valid.eq(p_ids),
            ids_cmd.p.queue.eq(ids_queue),
            ids_cmd.p.start.eq(start), ids_cmd.p.count.eq(g_m),
            s_cmd.valid.eq(p_stream), s_cmd.p.slot.eq(g_slot), s_cmd.p.m.eq(g_m),
            s_cmd.p.one_pass.eq(g_one), s_cmd.p.two_passes.eq(g_two),
            s_cmd.p.tiles.eq(tiles), s_cmd.p.words.eq(words),
            routes_cmd.valid.eq(p_routes), routes_cmd.p.queue.eq(routes_queue),
            routes_cmd.p.start.eq(start), routes_cmd.p.count.eq(g_m),
            e.hidden.start.eq(hidden_start), e.hidden.m.eq(g_m),
        ]
        for pend, port in ((p_unit, unit_cmd), (p_ids, ids_cmd), (p_stream, s_cmd),
                           (p_routes, routes_cmd)):
            with m.If(port.valid & port.ready):
                m.d.sync += pend.eq(0)
        with m.If(gx.valid & gx.ready):
            m.d.sync += p_gx.eq(0)
        with m.If(gh.valid & gh.ready):
            m.d.sync += p_gh.eq(0)

        # ---- counters --------------------------------------------------------------------------
        st = e.status
        # a step is counted two cycles after it happens (the unit's registered ``stepped``, then
        # registered here, so the compute unit's step decision does not reach 32-bit counters'
        # enables): the last step of a layer is long before its last ``out`` beat, so the totals
        # are the same. The counters are cleared
        # by a registered strobe the cycle after ``start`` (``start``'s handshake does not reach
        # their enables): they load that cycle's increment, so the totals are those of a clear
        # at ``start``.
        clear_stats = Signal()
        m.d.sync += clear_stats.eq(0)
        in_ffn = Signal()
        m.d.comb += in_ffn.eq(states["gemm1"] | states["gemm2"])
        step, ffn_step = Signal(), Signal()
        m.d.sync += [step.eq(e.unit.stepped), ffn_step.eq(0)]
        with m.If(running & in_ffn):
            m.d.sync += ffn_step.eq(e.unit.stepped)
        weights_in = Signal()

        def tally(field, cond):                     # a reset-less counter behind status.field
            port = getattr(st, field)
            counter = Signal.like(port, reset_less=True, name=f"n_{field}")
            m.d.comb += port.eq(counter)
            with m.If(clear_stats):
                m.d.sync += counter.eq(cond)
            with m.Elif(cond):
                m.d.sync += counter.eq(counter + 1)
        tally("cycles", running)
        tally("mac_steps", running & step)
        tally("ffn_steps", running & ffn_step)
        tally("ffn_cycles", running & in_ffn)
        tally("dram_busy", running & e.weights.fetch_busy)
        tally("fetches", running & e.weights.fetched)
        tally("weight_wait", waiting & ~weights_in)
        # the layer's routing figures, loaded when the router drains (the port is driven from
        # the counters' combinational domain, so these are registers of their own too)
        n_experts = Signal.like(st.experts, name="n_experts")
        n_dropped = Signal.like(st.dropped, name="n_dropped")
        n_null = Signal.like(st.null_slots, name="n_null_slots")
        m.d.comb += [st.experts.eq(n_experts), st.dropped.eq(n_dropped),
                     st.null_slots.eq(n_null)]
        with m.If(clear_stats):
            m.d.sync += n_experts.eq(0)

        # ---- scatter (accumulate in GEMM2, read-out at the end) --------------------------------
        m.d.comb += [sc_cmd.valid.eq(p_scatter), sc_cmd.p.readout.eq(readout),
                     sc_cmd.p.m.eq(sc_m), sc_cmd.p.n.eq(D)]
        to_readout = [readout.eq(1), p_scatter.eq(1)]
        with m.If(sc_cmd.valid & sc_cmd.ready):
            m.d.sync += p_scatter.eq(0)
        # result -> out, or dropped when clearing
        m.d.comb += [e.out.valid.eq(e.scatter.result.valid & ~discard),
                     e.out.p.eq(e.scatter.result.p),
                     e.scatter.result.ready.eq(e.out.ready | discard)]

        # the unit's last output row taken: by the serialiser (router GEMM), the hidden writer
        # (GEMM1, its ``done``) or the scatter (GEMM2, its last ``y``), as ``dest`` steers it
        out_last = Signal()
        m.d.comb += out_last.eq(e.unit.out.valid & e.unit.out.ready & e.unit.out.p.last)
        out_last_seen = Signal()
        with m.If(out_last):
            m.d.sync += out_last_seen.eq(1)
        # ``x1 == experts`` as a register: ``x1`` changes at the end of a GEMM2 and ``experts``
        # when the router drains, both long before the next GEMM2 ends
        x_last = Signal()
        m.d.sync += x_last.eq(x1 == experts)

        # ``fetched > g`` (the weights of matrix ``g`` are on chip) as a register, so that the
        # compare is not in front of WAIT_WEIGHTS' many loads: computed from the values of the
        # next cycle, ``fetched`` plus this cycle's ``fetched`` pulse and the ``g`` of the next
        # state (``g + 1`` leaving GEMM, ``g`` elsewhere; 0 from IDLE, where ``g`` and
        # ``fetched`` restart). ``g <= fetched`` always (a GEMM starts only when its weights are
        # in), so the compare is an inequality.
        g1 = Signal(range(matrices + 2), init=1)         # g + 1
        fetched1 = Signal(range(matrices + 2), init=1)   # fetched + 1
        with m.If(e.weights.fetched):
            m.d.sync += fetched1.eq(fetched1 + 1)
        m.d.sync += weights_in.eq(~idle & (Mux(e.weights.fetched, fetched1, fetched)
                                           != Mux(in_gemm, g1, g)))

        m.d.comb += e.busy.eq(running)
        # the expert queues are emptied the cycle after ``start`` (a register: the start
        # handshake's many loads are not in front of the queue store's); they are first written
        # by the router long after
        clear_queues = Signal()
        m.d.sync += clear_queues.eq(0)
        m.d.comb += e.queues.clear.eq(clear_queues)
        m.d.comb += e.start.ready.eq(idle)
        s_wait, s_flush, s_drain, s_readout = (states[n] for n in ("wait", "flush", "drain",
                                                                   "readout"))

        def goto(state):                            # the transition's target flag
            return states[state].eq(1)
        # IDLE
        with m.If(idle):
            # the gate matrix's address follows the offered task while idle (the handshake
            # does not reach it)
            m.d.sync += [task.eq(e.start.p.task), f_addr_r.eq(e.start.p.task * img.gate.bytes)]
            with m.If(e.start.valid):
                m.d.sync += [running.eq(1), idle.eq(0),
                             discard.eq(e.start.p.clear),
                             known.eq(0), fetch_n.eq(0), is_gate.eq(1), fetched.eq(0),
                             used.eq(0),
                             fetched1.eq(1), g1.eq(1),
                             used_s.eq(slots),
                             f_x.eq(0), f_second.eq(0), g.eq(0), router_gemm.eq(1),
                             x.eq(0), x1.eq(1)]
                m.d.sync += [clear_queues.eq(1), clear_stats.eq(1)]
                with m.If(e.start.p.clear):
                    m.d.sync += to_readout + [goto("readout")]
                with m.Else():
                    m.d.sync += [known.eq(1 + 2 * S), goto("wait")]
        # WAIT_WEIGHTS
        with m.If(s_wait & weights_in):
            gemm2_next = second & ~router_gemm
            m.d.sync += [p_unit.eq(1), p_gx.eq(~gemm2_next), p_gh.eq(gemm2_next),
                         p_ids.eq(1), p_stream.eq(1),
                         p_scatter.eq(gemm2_next), readout.eq(0),
                         p_routes.eq(gemm2_next),
                         use_hidden.eq(gemm2_next), self.use_x.eq(~gemm2_next),
                         dest.eq(Mux(router_gemm, 0, Mux(second, 2, 1))),
                         out_last_seen.eq(0), hidden_start.eq(1),
                         s_wait.eq(0), in_gemm.eq(1),
                         states["gemm_r"].eq(router_gemm),
                         states["gemm1"].eq(~router_gemm & ~second),
                         states["gemm2"].eq(gemm2_next)]
        # GEMM: GEMM1 and GEMM2 end with the unit's last row taken by the hidden writer or the
        # scatter, the router GEMM when the serialiser has sent its last row
        out_end = e.unit.out.valid & e.unit.out.p.last
        done_r, done_1, done_2 = Signal(), Signal(), Signal()
        m.d.comb += [done_r.eq(states["gemm_r"] & out_last_seen & e.serialiser.idle),
                     done_1.eq(states["gemm1"] & out_end & e.hidden.y.ready),
                     done_2.eq(states["gemm2"] & out_end & e.scatter.y.ready)]
        with m.If(done_r | done_1 | done_2):
            m.d.sync += [g.eq(g1), g1.eq(g1 + 1), router_gemm.eq(0), in_gemm.eq(0),
                         states["gemm_r"].eq(0), states["gemm1"].eq(0), states["gemm2"].eq(0)]
        with m.If(done_r):
            m.d.sync += goto("flush")
        with m.If(done_1):
            m.d.sync += goto("wait")
        with m.If(done_2):
            m.d.sync += [x.eq(x1), x1.eq(x1 + 1)]
            m.d.comb += advance.eq(1)
            with m.If(x_last):
                m.d.sync += to_readout + [goto("readout")]
            with m.Else():
                m.d.sync += goto("wait")
        # FLUSH
        m.d.comb += [e.router.flush.valid.eq(s_flush), e.router.flush.p.discard.eq(0)]
        with m.If(s_flush & e.router.flush.ready):
            m.d.sync += [s_flush.eq(0), goto("drain")]
        # DRAIN
        with m.If(drain_go):
            total = S + e.queues.active
            m.d.sync += [count.eq(first_queue()[0]), start.eq(first_queue()[1]),
                         experts.eq(total), known.eq(1 + 2 * total),
                         n_experts.eq(total), n_dropped.eq(e.router.status.dropped),
                         n_null.eq(e.router.status.null_slots), s_drain.eq(0)]
            with m.If(total == 0):
                m.d.sync += to_readout + [goto("readout")]
            with m.Else():
                m.d.sync += goto("wait")
        # READOUT
        with m.If(s_readout & e.scatter.result.valid & e.scatter.result.ready
                  & e.scatter.result.p.last):
            m.d.sync += [running.eq(0), idle.eq(1), s_readout.eq(0)]
        return m
