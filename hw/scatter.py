"""The compute unit's scatter-accumulate back end: ``out[token] += gate * y`` into an on-chip
output accumulator memory, and the finalised result read out as a stream
(:func:`golden.linear.scatter_accumulate`, :func:`golden.linear.scatter_finalise`)."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.fixed import smax, smin
from hw import multiplier
from hw.block_ram import BlockRam
from hw.compute_unit_layouts import Layouts
from hw.saturate import saturate
from hw.skid_buffer import SkidBuffer
from hw import token_tiles
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
    outputs on m3vit-tiny; the ulx3s preset's 1548 words (57 DP16KD) hold exactly its 129.

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
    back never stall. A route entry's first memory word ``token * words`` comes out of a
    pipelined DSP multiply (:class:`hw.multiplier.Multiplier`) ``BASE_STAGES`` = 2 cycles after
    the entry is taken, so a command's first row is taken in cycle ``FIRST_ROW_CYCLE`` = 4 at
    the earliest (command in cycle 0, its first entry in cycle 1); later entries are taken while
    earlier ones are in use. Read-modify-write in ``RMW_STAGES`` = 4 stages, so that the
    memory's read, the multipliers and the saturating add each get a cycle of their own:

    * 0: the row's handshake issues the memory read (its address a register: the ring slot,
      place in its token tile (rows left in the tile, last output word: registers, so the
      handshake's case selection starts at one small compare) and address of the row expected
      next are kept one cycle ahead, not derived from ``y.row``), ``gate`` and ``y`` go into
      the DSPs' input registers and the address is compared with the four rows ahead's.
      ``y.ready`` and ``route.ready`` are flip-flops too (computed a cycle ahead), so neither
      stream's producer sees logic of ours; every next value of the row position (slot,
      address, entries available, the ready flags) is computed for each case (no row, next
      row, next output word, next tile) from registers, and the row handshake only picks one;
    * 1: the block RAM reads; the forwarding choices are registered: the row one ahead (its
      sum is computed in the cycle this row needs it) or the sum of the nearest of the rows
      two to four ahead (registered here: ``far2_word``);
    * 2: the read word is in the block RAM's output register, the products in the DSPs';
      registered: the row's old word (the one ahead's sum, the far word or the read word) and
      the products;
    * 3: ``old + gate * y`` saturated (an adder and the saturation between registers);
    * 4: the sum is written (and kept one more cycle for forwarding).

    The block RAM has no collision logic: a read sees the writes of earlier cycles only, so
    the four rows ahead of a row are the forwarded ones. A command is accepted once the
    previous one has finished and its pipeline is empty (a read-out only after its last beat
    left). Read-out in ``READOUT_STAGES`` = 4 stages, one word per cycle: read -> the block
    RAM's output register -> decode register (each lane's range tests,
    :func:`finalise_decode`) -> finalise register (:func:`finalise_pick`); back-pressure stalls
    all four together (a block RAM placed across the die from the finalise logic cost round
    7's routed build 10.26 ns when the whole finalise followed the output register); the
    read word is cleared (written with zero) the cycle after its read. ``result`` leaves
    through a zero-latency :class:`hw.skid_buffer.SkidBuffer`, so the stall (fanned out to the
    payload registers and the block RAM's enables) starts at flip-flops, never at the
    consumer's ``ready``: the beats and their cycles are the same, the pipeline runs at most
    one beat ahead of a refusing consumer, and the next command waits for the skid to empty.

    All data registers are reset-less; reset clears the control state only.

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
        assert timing.RMW_STAGES == 4 and timing.READOUT_STAGES == 4
        assert timing.BASE_STAGES == multiplier.STAGES
        data_reg = dict(reset_less=True)

        m.submodules.memory = memory = BlockRam(width=lay.word.size, depth=memory_words(self.cfg),
                                                read_stages=2)
        wp, rp = memory.write, memory.read
        read2 = lay.word(rp.data)                 # the memory's output register (stage 2)

        # ``reading`` = busy & readout (a register: the read-out's issue is one gate after the
        # result's ready)
        busy, readout, reading = Signal(), Signal(), Signal()
        command = Signal(lay.command, **data_reg)
        words = Signal.like(command.n, **data_reg)          # ceil(n / cols)
        addr_shape = lay.token

        # ---- accumulate: route entries in a ring of 2 token tiles -------------------------
        ring_base = [Signal(addr_shape, name=f"ring_base{s}", **data_reg) for s in range(2 * rows)]
        ring_gate = [Signal(lay.route["gate"].shape, name=f"ring_gate{s}", **data_reg)
                     for s in range(2 * rows)]
        in_slot = Signal(range(2 * rows))
        tile_slot = Signal(range(2 * rows))       # ring slot (0 or rows) of the token tile in use
        # output tile j of the rows arriving now (set with each command: no reset)
        col_word = Signal.like(command.n, **data_reg)
        # the first queue index of the tile after the one in use plus ``rows`` (its end), a
        # register: the next tile's row count is computed from it a cycle ahead
        ring_end = Signal(range((1 << len(command.m)) + 2 * rows), **data_reg)
        accumulating = busy & ~readout
        # route entries taken, counted as: ``left`` (m - taken; ``more`` = left != 0, a
        # register), ``tile_taken`` (taken - the tile's first queue index: the ring is full at
        # 2 * rows) and ``avail`` (entries whose base has landed (below) - the queue index of the
        # row expected next: its entry is usable when avail != 0); small counters, so
        # ``route.ready`` and ``y.ready`` are registers computed one cycle ahead from these
        # counters' next values
        left = Signal.like(command.m, **data_reg)
        more = Signal()
        left_one = Signal(**data_reg)           # left == 1 (the entry taken next is the last)
        tile_taken = Signal(range(2 * rows + 1))
        avail = Signal(range(2 * rows + 1))
        take_route = Signal()
        m.d.comb += take_route.eq(self.route.valid & self.route.ready)
        with m.If(take_route):
            for s in range(2 * rows):
                with m.If(in_slot == s):
                    m.d.sync += ring_gate[s].eq(self.route.p.gate)
            m.d.sync += [left.eq(left - 1), more.eq(~left_one), left_one.eq(left == 2),
                         in_slot.eq(Mux(in_slot == 2 * rows - 1, 0, in_slot + 1))]
        # the entry's first memory word ``token * words`` from the DSP, BASE_STAGES cycles after
        # the entry is taken (it "lands" then: written into the ring and forwarded below)
        m.submodules.base_product = base_mul = multiplier.Multiplier(addr_shape, words.shape())
        m.d.comb += [base_mul.a.eq(self.route.p.token), base_mul.b.eq(words)]
        took = [Signal(name=f"took{s}") for s in range(1, timing.BASE_STAGES + 1)]
        took_slot = [Signal.like(in_slot, name=f"took_slot{s}", **data_reg)
                     for s in range(1, timing.BASE_STAGES + 1)]
        m.d.sync += [took[0].eq(take_route), took_slot[0].eq(in_slot)]
        m.d.sync += [took[s].eq(took[s - 1]) for s in range(1, timing.BASE_STAGES)]
        m.d.sync += [took_slot[s].eq(took_slot[s - 1]) for s in range(1, timing.BASE_STAGES)]
        land, land_slot = took[-1], took_slot[-1]
        land_base = base_mul.p[:addr_shape.width]
        with m.If(land):
            for s in range(2 * rows):
                with m.If(land_slot == s):
                    m.d.sync += ring_base[s].eq(land_base)
        # entries taken before this cycle whose base has not landed by the next cycle (registers;
        # with the entry taken now, if any, they are the entries in flight)
        pending = sum((took[s] for s in range(timing.BASE_STAGES - 1)), Const(0, 1))

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
        # words - 2, ``one_word`` = words == 1: set with the command). All are set the cycle
        # after the command from its registered fields (no row is taken before then).
        row_left = Signal(range(rows), **data_reg)
        tile_rows = Signal(range(rows), **data_reg)
        next_rows = Signal(range(rows), **data_reg)
        last_word, one_word = Signal(**data_reg), Signal(**data_reg)
        words_less2 = Signal.like(words, **data_reg)
        m.d.sync += next_rows.eq(token_tiles.last_row(command.m, ring_end) - (ring_end - rows))
        # what the row taken now does to the position: the next row of the tile, back to the
        # tile's first row for the next output word, or on to the next token tile. Every next
        # value below is computed for each of the four cases from registers, in parallel, and
        # ``step`` picks one: only ``take_y`` (the row handshake, whose ``y.valid`` comes from
        # the compute unit) and the case flags (registers) select, at the end of each path.
        at_end = row_left == 0

        def step(hold, new_tile, rewind, next_row) -> Value:
            return Mux(take_y, Mux(at_end, Mux(last_word, new_tile, rewind), next_row), hold)

        tile_end = take_y & at_end
        new_tile, rewind, next_row = Signal(), Signal(), Signal()
        m.d.comb += [new_tile.eq(tile_end & last_word), rewind.eq(tile_end & ~last_word),
                     next_row.eq(take_y & ~at_end)]
        other_tile = Mux(tile_slot == 0, rows, 0)
        slot_plus = Signal.like(slot)
        m.d.comb += slot_plus.eq(slot + 1)
        # the memory address of the row expected next (in a read-out: the word read next), a
        # register and the memory's read address: each candidate's adder starts at registers,
        # the row handshake only selects; the entry landing this cycle is forwarded (it is on
        # its tile's first output word)
        row_addr = Signal(addr_shape, **data_reg)
        slot_next = Signal.like(slot)
        addr_next = Signal(addr_shape)
        # a rewind goes to the tile's first row at the next output word; with one row per tile
        # that row is the one taken now, at ``row_addr``: no ring multiplexer before the adder
        rewind_addr = (row_addr + 1 if rows == 1
                       else ring_bases[tile_slot] + col_word + 1)
        m.d.comb += [
            slot_next.eq(step(slot, other_tile, tile_slot, slot_plus)),
            addr_next.eq(step(row_addr, ring_bases[other_tile], rewind_addr,
                              ring_bases[slot_plus] + col_word)),
        ]
        land_here = land & step(land_slot == slot, land_slot == other_tile,
                                land_slot == tile_slot, land_slot == slot_plus)
        # the ring's entries: ``tile_taken`` + the entry taken now - a tile's ``rows`` when the
        # row taken now ends the tile; ``avail`` (usable entries past the row expected next):
        # on a new tile or output word, the tile's entries taken minus those still in flight
        # (the entry taken now counts in both, so it cancels), else ``avail`` + the entry
        # landing - the row taken
        tile_taken_next = Signal.like(tile_taken)
        avail_next = Signal.like(avail)
        avail_hold, avail_new = avail + land, tile_taken - rows - pending
        avail_rewind, avail_row = tile_taken - pending, avail + land - 1
        m.d.comb += [
            tile_taken_next.eq(tile_taken + take_route - Mux(new_tile, rows, 0)),
            avail_next.eq(step(avail_hold, avail_new, avail_rewind, avail_row)),
        ]
        with m.If(new_tile):
            m.d.sync += [col_word.eq(0), last_word.eq(one_word), ring_end.eq(ring_end + rows),
                         row_left.eq(next_rows), tile_rows.eq(next_rows),
                         tile_slot.eq(other_tile)]
        with m.Elif(rewind):
            m.d.sync += [col_word.eq(col_word + 1), last_word.eq(col_word == words_less2),
                         row_left.eq(tile_rows)]
        with m.Elif(next_row):
            m.d.sync += row_left.eq(row_left - 1)
        # the ready flags, registers computed from the same cases: ``route.ready`` while
        # entries are left and the ring (``tile_taken_next``) is not full, ``y.ready`` while
        # the row expected next has its entry (``avail_next != 0``) and the last row is not
        # being taken. ``route.ready``'s next value is computed for each of the four cases (an
        # entry taken now or not, the row taken now ending its tile or not) from registers
        # alone, and the two handshakes pick one at the end: ``y.valid`` (the compute unit's
        # output register, steered by the engine) is two gates from the flip-flop.
        def route_ready_if(took_entry: bool, tile_done: bool) -> Value:
            # the ring is full when its entries (taken + took_entry - rows on a new tile) are 2 rows
            full_at = 2 * rows + (rows if tile_done else 0) - (1 if took_entry else 0)
            return accumulating & (~left_one if took_entry else more) & (tile_taken != full_at)

        tile_go = Signal()                        # a row taken now would end the tile
        m.d.comb += tile_go.eq(self.y.ready & at_end & last_word)
        new_tile_now = self.y.valid & tile_go
        route_ready_next = Mux(take_route,
                               Mux(new_tile_now, route_ready_if(True, True),
                                   route_ready_if(True, False)),
                               Mux(new_tile_now, route_ready_if(False, True),
                                   route_ready_if(False, False)))
        row_ready = Mux(take_y,
                        ~y.last & Mux(at_end, Mux(last_word, avail_new != 0, avail_rewind != 0),
                                      avail_row != 0),
                        avail_hold != 0)
        m.d.sync += [slot.eq(slot_next), tile_taken.eq(tile_taken_next), avail.eq(avail_next),
                     row_addr.eq(Mux(land_here, land_base, addr_next)),
                     self.route.ready.eq(route_ready_next),
                     self.y.ready.eq(accumulating & row_ready)]

        # ---- read-modify-write pipeline (stages as in the docstring) -------------------------
        stages = range(1, timing.RMW_STAGES + 1)
        valid = {s: Signal(name=f"valid{s}") for s in stages}
        addr = {s: Signal(addr_shape, name=f"addr{s}", **data_reg) for s in stages}
        m.d.sync += [valid[1].eq(take_y), addr[1].eq(row_addr)]
        m.d.sync += [valid[s].eq(valid[s - 1]) for s in stages[1:]]
        m.d.sync += [addr[s].eq(addr[s - 1]) for s in stages[1:]]
        # stage 0: the read is issued (rp.addr = row_addr); gate and y go into the DSPs' input
        # registers; the row's address is compared with the rows 1 .. 4 ahead (in stages 1 .. 4)
        same1 = {d: Signal(name=f"same1_{d}") for d in stages}
        m.d.sync += [same1[d].eq(valid[d] & (addr[d] == row_addr)) for d in stages]
        products = []
        for c in range(cols):
            mul = multiplier.Multiplier(row_gate.shape(), y.data[c].shape())
            m.submodules[f"product{c}"] = mul
            m.d.comb += [mul.a.eq(row_gate), mul.b.eq(y.data[c])]
            products.append(mul.p)
        # the sums: ``total`` (stage 3, combinational), then ``sum4`` (stage 4, being written)
        # and ``sum5`` (kept for forwarding)
        total = Signal(lay.word)
        sum4, sum5 = Signal(lay.word, **data_reg), Signal(lay.word, **data_reg)
        # stage 1: the forwarding choices for the row's stage 3: the row one ahead (``near2``:
        # its total, computed then), else the word ``far2_word`` of the nearest of the rows two
        # to four ahead (``far2``), else the read word
        near2, far2 = Signal(), Signal()
        far2_word = Signal(lay.word, **data_reg)
        m.d.sync += [near2.eq(same1[1]), far2.eq(same1[2] | same1[3] | same1[4]),
                     far2_word.eq(Mux(same1[2], total, Mux(same1[3], sum4, sum5)))]
        # stage 2: the read word is in the block RAM's output register and the products in the
        # DSPs'; registered: the row's ``old`` word (forwarded or read) and products (exact in
        # frac + y bits: |gate * y| <= 2**frac * 2**(y bits - 1))
        old3 = Signal(lay.word, **data_reg)
        product_bits = frac + len(y.data[0])
        prod3 = [Signal(signed(product_bits), name=f"prod3_{c}", **data_reg) for c in range(cols)]
        m.d.sync += old3.eq(Mux(near2, total, Mux(far2, far2_word, read2)))
        m.d.sync += [prod3[c].eq(products[c][:product_bits]) for c in range(cols)]
        # stage 3: old + gate * y saturated, between registers
        for c in range(cols):
            m.d.comb += total[c].eq(saturate(old3[c] + prod3[c], cu.accumulator_bits))
        # stage 4: the sum is written (below) and kept one more cycle for forwarding
        m.d.sync += [sum4.eq(total), sum5.eq(sum4)]

        # ---- read-out: read -> read data register -> decode register -> finalise register ->
        # skid buffer ---------------------------------------------------------------------------
        # ``out`` is the finalise register's stream; ``result`` leaves through a skid buffer, so
        # the read-out pipeline's advance (fanned out to every payload register and the block
        # RAM's enables) starts at flip-flops: ``out.valid`` and the skid's registered ready
        m.submodules.result_skid = skid = SkidBuffer(lay.result)
        wiring.connect(m, skid.o, wiring.flipped(self.result))
        out = skid.i
        advance = Signal()
        issue = Signal()
        # read_word: the word of the token read next; ``word_last`` / ``token_last`` (flags,
        # registers) = it is the token's last word / the last token
        read_token = Signal(addr_shape, **data_reg)
        read_word = Signal.like(command.n, **data_reg)
        word_last, token_last = Signal(**data_reg), Signal(**data_reg)
        tokens_left = Signal.like(command.m, **data_reg)     # tokens after the one read next
        valid_r, valid_f, valid_d = Signal(), Signal(), Signal()
        token_r, token_f, token_d = (Signal(addr_shape, name=f"token_{s}", **data_reg)
                                     for s in "rfd")
        last_r, last_f, last_d = (Signal(name=f"last_{s}", **data_reg) for s in "rfd")
        # the read word's lanes decoded for the finalise (:func:`finalise_decode`): the block
        # RAM's output register feeds only the range tests, not the whole finalise
        decoded = [Signal(finalise_layout(cu.operand_bits), name=f"decoded{c}", **data_reg)
                   for c in range(cols)]
        # the result beat's payload registers (no reset: ``out.valid`` qualifies them)
        data_o = Signal.like(out.p.data, **data_reg)
        token_o, last_o = Signal(addr_shape, **data_reg), Signal(**data_reg)
        clear = Signal()
        last_issue = token_last & word_last
        # ``out_idle`` = ~out.valid, stored inverted (synthesis keeps it apart from out.valid):
        # ``issue`` (the read-out counters' enable) is then its own gate of three flip-flops,
        # not a gate behind ``advance``'s wide fan-out
        out_idle = Signal(init=1)
        m.d.comb += [advance.eq(~out.valid | out.ready),
                     issue.eq(reading & (out_idle | out.ready))]
        with m.If(issue):
            m.d.sync += row_addr.eq(row_addr + 1)
            with m.If(word_last):
                m.d.sync += [read_word.eq(0), word_last.eq(one_word),
                             read_token.eq(read_token + 1), tokens_left.eq(tokens_left - 1),
                             token_last.eq(tokens_left == 1)]
            with m.Else():
                m.d.sync += [read_word.eq(read_word + 1), word_last.eq(read_word == words_less2)]
            with m.If(last_issue):
                m.d.sync += [busy.eq(0), reading.eq(0)]
        # the word read is cleared the cycle after (through the write stage's registers)
        m.d.sync += clear.eq(issue)
        with m.If(advance):
            m.d.sync += [valid_r.eq(issue), token_r.eq(read_token), last_r.eq(last_issue),
                         valid_f.eq(valid_r), token_f.eq(token_r), last_f.eq(last_r),
                         valid_d.eq(valid_f), token_d.eq(token_f), last_d.eq(last_f),
                         out.valid.eq(valid_d), out_idle.eq(~valid_d),
                         token_o.eq(token_d), last_o.eq(last_d)]
            for c in range(cols):
                m.d.sync += finalise_decode(decoded[c], read2[c], frac, cu.rounding == "half_up")
                m.d.sync += data_o[c].eq(finalise_pick(decoded[c]))
        m.d.comb += [out.p.data.eq(data_o), out.p.token.eq(token_o), out.p.last.eq(last_o)]

        # ---- the memory ports, shared by the two modes: the write port's address and data are
        # registers (in a read-out: the address read the cycle before, and zero) -----------------
        last = timing.RMW_STAGES
        with m.If(readout):
            m.d.sync += [addr[last].eq(row_addr), sum4.eq(0)]
        m.d.comb += [
            rp.addr.eq(row_addr),
            rp.en.eq(~readout | advance),
            wp.addr.eq(addr[last]),
            wp.data.eq(sum4),
            wp.en.eq(valid[last] | clear),
        ]

        # ---- commands -------------------------------------------------------------------------
        with m.If(take_y & y.last):
            m.d.sync += busy.eq(0)
        # ``cmd.ready`` = idle: not busy and every pipeline stage empty; a register computed a
        # cycle ahead from the next values of the flags it tests (1 after reset: all empty)
        take_cmd = Signal()
        m.d.comb += take_cmd.eq(self.cmd.valid & self.cmd.ready)
        ready = Signal(init=1)
        busy_next = take_cmd | (busy & ~(take_y & y.last) & ~(issue & last_issue))
        m.d.sync += ready.eq(~busy_next & ~take_y & ~Cat(*(valid[s] for s in stages[:-1])).any()
                             & ~issue
                             & ~Mux(advance, issue | valid_r | valid_f | valid_d,
                                    valid_r | valid_f | valid_d | out.valid))
        # (and the skid buffer empty: a read-out's last beat has left)
        m.d.comb += self.cmd.ready.eq(ready & out.ready)
        with m.If(take_cmd):
            p = self.cmd.p
            m.d.sync += [busy.eq(1), readout.eq(p.readout), reading.eq(p.readout), command.eq(p),
                         words.eq((p.n + cols - 1) // cols),
                         left.eq(p.m), more.eq(1), left_one.eq(p.m == 1),
                         tile_taken.eq(0), avail.eq(0),
                         self.route.ready.eq(~p.readout), self.y.ready.eq(0),
                         in_slot.eq(0), ring_end.eq(2 * rows), tile_slot.eq(0), col_word.eq(0),
                         slot.eq(0), row_addr.eq(0),
                         read_token.eq(0), read_word.eq(0),
                         word_last.eq(p.n <= cols), token_last.eq(p.m == 1),
                         tokens_left.eq(p.m - 1), one_word.eq(p.n <= cols),
                         words_less2.eq((p.n + cols - 1) // cols - 2)]
        # the first tile's rows and the word flags from the registered command (no row is taken
        # before then)
        fresh = Signal()
        m.d.sync += fresh.eq(take_cmd)
        with m.If(fresh):
            first_rows = token_tiles.last_row(command.m, rows)
            m.d.sync += [row_left.eq(first_rows), tile_rows.eq(first_rows),
                         last_word.eq(one_word)]
        return m


def finalise_layout(bits: int) -> data.StructLayout:
    """An accumulator decoded for :func:`finalise_pick` (see :func:`finalise_decode`)."""
    return data.StructLayout({"low": unsigned(bits), "up": 1, "negative": 1, "top_zero": 1,
                              "top_ones": 1})


def finalise_decode(decoded: data.View, acc: Value, frac: int, half_up: bool) -> list:
    """The first half of an accumulator's finalise (:func:`golden.linear.scatter_finalise`:
    ``acc`` rounded off ``frac`` fraction bits, half up or truncated, and saturated to signed
    ``bits``), as assignments to ``decoded`` (a :func:`finalise_layout` view): ``t = acc >>
    frac``'s low ``bits`` bits, the rounding bit ``up`` (bit ``frac - 1``, or 0), ``t``'s
    sign and whether its top bits (from bit ``bits - 1``) are all zero or all one.

    Built for a short path: no adder spans the accumulator, only the all-zero / all-one tests
    of ``t``'s top bits."""
    bits = len(decoded.low)
    t = acc[frac:].as_signed()
    top = t[bits - 1:]
    return [decoded.low.eq(t[:bits]), decoded.up.eq(acc[frac - 1] if half_up and frac > 0 else 0),
            decoded.negative.eq(t[-1]), decoded.top_zero.eq(top == 0),
            decoded.top_ones.eq(top == (1 << len(top)) - 1)]


def finalise_pick(decoded: data.View) -> Value:
    """The second half of the finalise, from :func:`finalise_decode`'s fields: a ``bits``-bit
    increment of ``low`` by ``up`` and, per output bit, one gate of the sign, the two range
    flags and the increment's bit. A positive ``t`` gives the increment if its top bits are zero
    and it is not ``smax`` rounded up (else ``smax``); a negative one the increment if its top
    bits are all one (it cannot overflow), else ``smin``."""
    bits = len(decoded.low)
    low, up = decoded.low, decoded.up
    positive_fits = decoded.top_zero & ~(up & (low == smax(bits)))
    rounded = (low + up)[:bits].as_signed()
    return Mux(decoded.negative, Mux(decoded.top_ones, rounded, smin(bits)),
               Mux(positive_fits, rounded, smax(bits)))
