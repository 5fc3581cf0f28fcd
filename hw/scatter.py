"""The compute unit's scatter-accumulate back end: ``out[token] += gate * y`` into an on-chip
output accumulator memory, and the finalised result read out as a stream
(:func:`golden.linear.scatter_accumulate`, :func:`golden.linear.scatter_finalise`)."""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.compute_unit_layouts import Layouts
from hw import token_tiles
from hw.saturate import saturate
from moeaccel.config import DesignConfig
from sim.timing import scatter as timing


def memory_words(cfg: DesignConfig) -> int:
    """Words of the output memory: ``output_bytes`` of ``cols`` accumulators each."""
    cu = cfg.hardware.compute_unit
    return cfg.hardware.buffers.output_bytes * 8 // (cu.accumulator_bits * cu.cols)


class ScatterLayouts:
    """Payloads of :class:`ScatterAccumulate`.

    * ``command``: ``readout`` (0: accumulate a GEMM's output rows, 1: read the result out),
      ``m`` (queue entries to accumulate, or tokens ``0..m-1`` to read out) and ``n`` outputs
      per token (the same ``n`` for every command of a layer);
    * ``route``: one queue entry, ``token`` and ``gate`` (unsigned, ``prob_frac_bits`` fraction
      bits, ``0 .. 2**prob_frac_bits`` = 1.0);
    * ``word``: ``cols`` signed ``accumulator_bits`` accumulators (one memory word);
    * ``result``: ``cols`` finalised outputs (signed ``operand_bits``) of ``token``, ``last`` on
      the read-out's final beat.
    """

    def __init__(self, cfg: DesignConfig):
        cu, frac = cfg.hardware.compute_unit, cfg.hardware.softmax.prob_frac_bits
        dim = Layouts(cfg).command["m"].shape
        self.token = unsigned(max(1, (memory_words(cfg) - 1).bit_length()))
        self.command = data.StructLayout({"readout": 1, "m": dim, "n": dim})
        self.route = data.StructLayout({"token": self.token, "gate": unsigned(frac + 1)})
        self.word = data.ArrayLayout(signed(cu.accumulator_bits), cu.cols)
        self.result = data.StructLayout({
            "data": data.ArrayLayout(signed(cu.operand_bits), cu.cols), "token": self.token,
            "last": 1,
        })


class ScatterAccumulate(wiring.Component):
    """Accumulates gated expert outputs per token and reads the finalised sums out.

    The output memory holds ``out_acc [tokens, n]`` as ``ceil(n/cols)`` words per token (word
    ``token * ceil(n/cols) + j`` = outputs ``j*cols ..``), all zero after configuration and
    cleared by each read-out of the words it reads (ready for the next layer; reset does not
    clear it). It holds ``memory_words // ceil(n/cols)`` tokens: 2048 words = 170 tokens of 192
    outputs on m3vit-tiny; the ulx3s preset's 64 KiB (1024 words) holds only 85 of its 129.

    Accumulate (``cmd.readout = 0``, ``m`` entries): ``route`` carries the expert queue's ``m``
    ``(token, gate)`` entries in queue order; ``y`` the compute unit's output rows exactly as
    :class:`hw.compute_unit.ComputeUnit` emits them (``y.row`` = queue index, output tiles in
    its tile order). Each row does ``out_acc[token, j*cols + c] = saturate(out_acc + gate *
    y[c], accumulator_bits)``: the product is exact, the addition saturates, as
    :func:`golden.linear.scatter_accumulate`. Up to ``2 * rows`` route entries are buffered (a
    token tile in use and the next one); a row waits for its route entry. ``m >= 1``.

    Read-out (``cmd.readout = 1``, ``m`` tokens): ``result`` streams tokens ``0..m-1``, words in
    order, each lane :func:`golden.linear.scatter_finalise` (round off ``prob_frac_bits`` once,
    saturate to ``operand_bits``); lanes past ``n`` are don't-care.

    Timing (:mod:`sim.timing.scatter`): one row per cycle, rows hitting the same token back to
    back never stall. Read-modify-write in ``RMW_STAGES`` = 3 stages, so that the memory's read
    data and the multiplier each get a cycle of their own:

    * 0: the row's handshake issues the memory read (its address a register: the ring slot,
      place in its token tile (rows left in the tile, last output word: registers, so the
      handshake's case selection starts at one small compare) and address of the row expected
      next are kept one cycle ahead, not derived from ``y.row``) and registers ``gate`` and
      ``y``. ``y.ready`` and ``route.ready`` are flip-flops too (computed a cycle ahead), so
      neither stream's producer sees logic of ours;
    * 1: the read data is registered (the block RAM's output register), the ``cols`` products
      ``gate * y`` are computed and registered, and the forwarding choices are registered: the
      row one ahead (now in stage 2) if it has the same address, else the row two ahead
      (being written now);
    * 2: ``old + gate * y`` saturated, ``old`` being the forwarded word or the read data (an
      adder, one multiplexer and the saturation between registers);
    * 3: the sum is written (and kept one more cycle for forwarding).

    The read issued in stage 0 is transparent to the write in the same cycle, so it sees rows
    three or more ahead; the two rows in between are the forwarded ones. A command is accepted once the
    previous one has finished and its pipeline is empty (a read-out only after its last beat
    left). Read-out in ``READOUT_STAGES`` = 3 stages, one word per cycle: read -> read data
    register -> finalise register; back-pressure stalls all three together; the read word is
    cleared the cycle after its read.

    Members
    -------
    cmd : In(stream of ``ScatterLayouts.command``)
    route : In(stream of ``ScatterLayouts.route``)
    y : In(stream of ``Layouts.out``), the compute unit's ``out``
    result : Out(stream of ``ScatterLayouts.result``)
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.layouts = lay = ScatterLayouts(cfg)
        super().__init__({
            "cmd": In(stream.Signature(lay.command)),
            "route": In(stream.Signature(lay.route)),
            "y": In(stream.Signature(Layouts(cfg).out)),
            "result": Out(stream.Signature(lay.result)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        frac = self.cfg.hardware.softmax.prob_frac_bits
        rows, cols, lay = cu.rows, cu.cols, self.layouts
        assert timing.RMW_STAGES == 3 and timing.READOUT_STAGES == 3

        m.submodules.memory = memory = Memory(shape=lay.word, depth=memory_words(self.cfg), init=[])
        wp = memory.write_port()
        rp = memory.read_port(transparent_for=[wp])

        busy, readout = Signal(), Signal()
        command = Signal(lay.command)
        words = Signal.like(command.n)            # ceil(n / cols)
        addr_shape = lay.token

        # ---- accumulate: route entries in a ring of 2 token tiles -------------------------
        ring_base = [Signal(addr_shape, name=f"ring_base{s}") for s in range(2 * rows)]
        ring_gate = [Signal(lay.route["gate"].shape, name=f"ring_gate{s}") for s in range(2 * rows)]
        in_slot = Signal(range(2 * rows))
        tile_slot = Signal(range(2 * rows))       # ring slot (0 or rows) of the token tile in use
        # output tile j of the rows arriving now (set with each command: no reset)
        col_word = Signal.like(command.n, reset_less=True)
        # the first queue index of the tile after the one in use plus ``rows`` (its end), a
        # register: the next tile's row count is computed from it a cycle ahead
        ring_end = Signal(range((1 << len(command.m)) + 2 * rows))
        accumulating = busy & ~readout
        # route entries taken, counted as: ``left`` (m - taken; ``more`` = left != 0, a
        # register), ``tile_taken`` (taken - the tile's first queue index: the ring is full at
        # 2 * rows) and ``avail`` (taken - the queue index of the row expected next: its entry
        # is in the ring when avail != 0); small counters, so ``route.ready`` and ``y.ready``
        # are registers computed one cycle ahead from these counters' next values
        left = Signal.like(command.m)
        more = Signal()
        tile_taken = Signal(range(2 * rows + 1))
        avail = Signal(range(2 * rows + 1))
        take_route = Signal()
        route_base = Signal(addr_shape)           # the entry's first memory word, token * words
        m.d.comb += [take_route.eq(self.route.valid & self.route.ready),
                     route_base.eq(self.route.p.token * words)]
        with m.If(take_route):
            for s in range(2 * rows):
                with m.If(in_slot == s):
                    m.d.sync += [ring_base[s].eq(route_base), ring_gate[s].eq(self.route.p.gate)]
            m.d.sync += [left.eq(left - 1), more.eq(left != 1),
                         in_slot.eq(Mux(in_slot == 2 * rows - 1, 0, in_slot + 1))]

        y = self.y.p
        take_y = Signal()
        m.d.comb += take_y.eq(self.y.valid & self.y.ready)
        slot = Signal(range(2 * rows))            # ring slot of the row expected next
        row_gate = Signal(lay.route["gate"].shape)
        ring_gates = Array(ring_gate)
        ring_bases = Array(ring_base)
        m.d.comb += row_gate.eq(ring_gates[slot])
        # where the row expected next sits, as registers so the row handshake's case selection
        # starts at one small compare: ``row_left`` = rows of the tile after it (0 on the tile's
        # last row, counted down), ``tile_rows`` = the tile's rows - 1 (reloaded into row_left
        # for the next output word) and ``next_rows`` = the next tile's rows - 1 (computed a
        # cycle ahead from ``ring_end``; tiles of ``rows >= 2`` rows take two cycles or more);
        # ``last_word`` = col_word == words - 1, updated with col_word (``words_less2`` =
        # words - 2). All are set the cycle after the command from its registered fields (no
        # row is taken before then).
        row_left = Signal(range(rows))
        tile_rows = Signal(range(rows))
        next_rows = Signal(range(rows))
        last_word, one_word = Signal(), Signal()
        words_less2 = Signal.like(words)
        m.d.sync += next_rows.eq(token_tiles.last_row(command.m, ring_end) - (ring_end - rows))
        # what the row taken now does to the position: the next row of the tile, back to the
        # tile's first row for the next output word, or on to the next token tile
        tile_end = take_y & (row_left == 0)
        new_tile, rewind, next_row = Signal(), Signal(), Signal()
        m.d.comb += [new_tile.eq(tile_end & last_word), rewind.eq(tile_end & ~last_word),
                     next_row.eq(take_y & ~tile_end)]
        other_tile = Mux(tile_slot == 0, rows, 0)
        # the memory address of the row expected next, a register (the memory's read address):
        # each candidate's adder starts at registers, the row handshake only selects; the entry
        # written into the ring this cycle is forwarded (it is on its tile's first output word)
        row_addr = Signal(addr_shape)
        slot_next = Signal.like(slot)
        addr_next = Signal(addr_shape)
        tile_taken_next = Signal.like(tile_taken)
        avail_next = Signal.like(avail)
        m.d.comb += tile_taken_next.eq(tile_taken + take_route - Mux(new_tile, rows, 0))
        with m.If(new_tile):
            m.d.comb += [slot_next.eq(other_tile), addr_next.eq(ring_bases[other_tile]),
                         avail_next.eq(tile_taken_next)]
            m.d.sync += [col_word.eq(0), last_word.eq(one_word), ring_end.eq(ring_end + rows),
                         row_left.eq(next_rows), tile_rows.eq(next_rows),
                         tile_slot.eq(other_tile)]
        with m.Elif(rewind):
            m.d.comb += [slot_next.eq(tile_slot),
                         addr_next.eq(ring_bases[tile_slot] + col_word + 1),
                         avail_next.eq(tile_taken_next)]
            m.d.sync += [col_word.eq(col_word + 1), last_word.eq(col_word == words_less2),
                         row_left.eq(tile_rows)]
        with m.Elif(next_row):
            m.d.comb += [slot_next.eq(slot + 1), addr_next.eq(ring_bases[slot + 1] + col_word),
                         avail_next.eq(avail + take_route - 1)]
            m.d.sync += row_left.eq(row_left - 1)
        with m.Else():
            m.d.comb += [slot_next.eq(slot), addr_next.eq(row_addr),
                         avail_next.eq(avail + take_route)]
        m.d.sync += [slot.eq(slot_next), tile_taken.eq(tile_taken_next), avail.eq(avail_next),
                     row_addr.eq(Mux(take_route & (in_slot == slot_next), route_base, addr_next)),
                     self.route.ready.eq(accumulating & Mux(take_route, left != 1, more)
                                         & (tile_taken_next != 2 * rows)),
                     self.y.ready.eq(accumulating & ~(take_y & y.last) & (avail_next != 0))]

        # ---- read-modify-write pipeline (stages as in the docstring) -------------------------
        acc_bits = cu.accumulator_bits
        data_reg = dict(reset_less=True)
        y_lane = y.data[0].shape()
        # stage 0 -> 1: the read is issued below (rp.addr); gate and y registered
        valid1, valid2, valid3 = (Signal(name=f"valid{s}") for s in range(1, 4))
        addr1, addr2, addr3 = (Signal(addr_shape, name=f"addr{s}", **data_reg)
                               for s in range(1, 4))
        gate1 = Signal(row_gate.shape(), **data_reg)
        y1 = [Signal(y_lane, name=f"y1_{c}", **data_reg) for c in range(cols)]
        m.d.sync += [valid1.eq(take_y), addr1.eq(row_addr), gate1.eq(row_gate)]
        m.d.sync += [y1[c].eq(y.data[c]) for c in range(cols)]
        # stage 1 -> 2: read data, products and forwarding choices registered
        read2 = Signal(lay.word, **data_reg)             # the memory's read data register
        prod2 = [Signal(signed(len(gate1) + y_lane.width + 1), name=f"prod2_{c}", **data_reg)
                 for c in range(cols)]
        sum3, sum4 = Signal(lay.word, **data_reg), Signal(lay.word, **data_reg)
        near2, far2 = Signal(), Signal()
        m.d.sync += [valid2.eq(valid1), addr2.eq(addr1),
                     near2.eq(valid2 & (addr2 == addr1)), far2.eq(valid3 & (addr3 == addr1))]
        m.d.sync += [prod2[c].eq(gate1 * y1[c]) for c in range(cols)]
        with m.If(rp.en):
            m.d.sync += read2.eq(rp.data)
        # stage 2 -> 3: saturating add onto the forwarded or read word
        old = Signal(lay.word)
        m.d.comb += old.eq(Mux(near2, sum3, Mux(far2, sum4, read2)))
        for c in range(cols):
            m.d.sync += sum3[c].eq(saturate(old[c] + prod2[c], acc_bits))
        m.d.sync += [valid3.eq(valid2), addr3.eq(addr2)]
        # stage 3: write (below); the written word kept one more cycle for forwarding
        m.d.sync += sum4.eq(sum3)

        # ---- read-out: read -> read data register -> finalise register ----------------------
        advance = Signal()
        issue = Signal()
        read_addr = Signal(addr_shape)
        read_token = Signal(addr_shape)
        read_word = Signal.like(command.n)
        valid_r, valid_f = Signal(), Signal()
        token_r, token_f = Signal(addr_shape), Signal(addr_shape)
        last_r, last_f = Signal(), Signal()
        clear, clear_addr = Signal(), Signal(addr_shape)
        last_issue = (read_token == command.m - 1) & (read_word == words - 1)
        m.d.comb += [advance.eq(~self.result.valid | self.result.ready),
                     issue.eq(advance & busy & readout)]
        with m.If(issue):
            m.d.sync += read_addr.eq(read_addr + 1)
            with m.If(read_word == words - 1):
                m.d.sync += [read_word.eq(0), read_token.eq(read_token + 1)]
            with m.Else():
                m.d.sync += read_word.eq(read_word + 1)
            with m.If(last_issue):
                m.d.sync += busy.eq(0)
        m.d.sync += [clear.eq(issue), clear_addr.eq(read_addr)]
        with m.If(advance):
            m.d.sync += [valid_r.eq(issue), token_r.eq(read_token), last_r.eq(last_issue),
                         valid_f.eq(valid_r), token_f.eq(token_r), last_f.eq(last_r),
                         self.result.valid.eq(valid_f), self.result.p.token.eq(token_f),
                         self.result.p.last.eq(last_f)]
            half = Const((1 << frac) >> 1 if cu.rounding == "half_up" else 0)
            for c in range(cols):
                m.d.sync += self.result.p.data[c].eq(
                    saturate((read2[c] + half) >> frac, cu.operand_bits))

        # ---- the memory ports, shared by the two modes --------------------------------------
        m.d.comb += [
            rp.addr.eq(Mux(readout, read_addr, row_addr)),
            rp.en.eq(~readout | advance),
            wp.addr.eq(Mux(readout, clear_addr, addr3)),
            wp.data.eq(Mux(readout, 0, sum3.as_value())),
            wp.en.eq(Mux(readout, clear, valid3)),
        ]

        # ---- commands -------------------------------------------------------------------------
        with m.If(take_y & y.last):
            m.d.sync += busy.eq(0)
        idle = (~busy & ~valid1 & ~valid2 & ~valid3 & ~clear & ~valid_r & ~valid_f
                & ~self.result.valid)
        m.d.comb += self.cmd.ready.eq(idle)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [busy.eq(1), readout.eq(self.cmd.p.readout), command.eq(self.cmd.p),
                         words.eq((self.cmd.p.n + cols - 1) // cols),
                         left.eq(self.cmd.p.m), more.eq(1), tile_taken.eq(0), avail.eq(0),
                         self.route.ready.eq(~self.cmd.p.readout), self.y.ready.eq(0),
                         in_slot.eq(0), ring_end.eq(2 * rows), tile_slot.eq(0), col_word.eq(0),
                         slot.eq(0), read_addr.eq(0),
                         read_token.eq(0), read_word.eq(0)]
        # the first tile's rows and the word flags from the registered command (no row is taken
        # before then)
        fresh = Signal()
        m.d.sync += fresh.eq(self.cmd.valid & self.cmd.ready)
        with m.If(fresh):
            first_rows = token_tiles.last_row(command.m, rows)
            m.d.sync += [row_left.eq(first_rows), tile_rows.eq(first_rows),
                         last_word.eq(words == 1), one_word.eq(words == 1),
                         words_less2.eq(words - 2)]
        return m
