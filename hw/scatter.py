"""The compute unit's scatter-accumulate back end: ``out[token] += gate * y`` into an on-chip
output accumulator memory, and the finalised result read out as a stream
(:func:`golden.linear.scatter_accumulate`, :func:`golden.linear.scatter_finalise`)."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
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
    token tile in use and the next one); a row waits for its route entry.

    Read-out (``cmd.readout = 1``, ``m`` tokens): ``result`` streams tokens ``0..m-1``, words in
    order, each lane :func:`golden.linear.scatter_finalise` (round off ``prob_frac_bits`` once,
    saturate to ``operand_bits``); lanes past ``n`` are don't-care.

    Timing (:mod:`sim.timing.scatter`): one row per cycle, rows hitting the same token back to
    back never stall. Read-modify-write in ``RMW_STAGES`` = 3 stages, so that the memory's read
    data and the multiplier each get a cycle of their own:

    * 0: the row's handshake issues the memory read (its address from registers: the ring
      slot and queue index of the row expected next are counted, not derived from ``y.row``, so
      ``y.ready`` does not depend on ``y``) and registers ``gate`` and ``y``;
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
        taken = Signal.like(command.m)            # route entries taken
        in_slot = Signal(range(2 * rows))
        tile_row = Signal.like(command.m)         # first queue index of the token tile in use
        tile_slot = Signal(range(2 * rows))       # its ring slot (0 or rows)
        col_word = Signal.like(command.n)         # output tile j of the rows arriving now
        # tile_row + 2 * rows, kept as a register so no adder sits before the compare
        ring_end = Signal(range((1 << len(taken)) + 2 * rows))
        accumulating = busy & ~readout
        m.d.comb += self.route.ready.eq(accumulating & (taken != command.m) & (taken < ring_end))
        with m.If(self.route.valid & self.route.ready):
            for s in range(2 * rows):
                with m.If(in_slot == s):
                    m.d.sync += [ring_base[s].eq(self.route.p.token * words),
                                 ring_gate[s].eq(self.route.p.gate)]
            m.d.sync += [taken.eq(taken + 1),
                         in_slot.eq(Mux(in_slot == 2 * rows - 1, 0, in_slot + 1))]

        y = self.y.p
        take_y = Signal()
        # the queue index of the row expected next: rows arrive in order, so it equals ``y.row``
        # whenever ``y`` is valid, and ``y.ready`` (its route entry has been taken) compares two
        # registers instead of starting at the compute unit's output
        expected = Signal.like(command.m)
        m.d.comb += [take_y.eq(self.y.valid & self.y.ready),
                     self.y.ready.eq(accumulating & (taken > expected))]
        slot = Signal(range(2 * rows))            # ring slot of the row expected next
        row_base = Signal(addr_shape)
        row_gate = Signal(lay.route["gate"].shape)
        for s in range(2 * rows):
            with m.If(slot == s):
                m.d.comb += [row_base.eq(ring_base[s]), row_gate.eq(ring_gate[s])]
        # the tile's last queue index, min(m, tile_row + rows) - 1, kept in a register (set by
        # the command and whenever tile_row advances) so no adder sits before the compare
        tile_last_row = Signal.like(command.m)
        with m.If(take_y & (expected == tile_last_row)):
            with m.If(col_word == words - 1):
                m.d.sync += [col_word.eq(0), tile_row.eq(tile_row + rows),
                             expected.eq(tile_row + rows), ring_end.eq(ring_end + rows),
                             tile_last_row.eq(token_tiles.last_row(command.m, ring_end)),
                             tile_slot.eq(Mux(tile_slot == 0, rows, 0)),
                             slot.eq(Mux(tile_slot == 0, rows, 0))]
            with m.Else():
                m.d.sync += [col_word.eq(col_word + 1), slot.eq(tile_slot), expected.eq(tile_row)]
        with m.Elif(take_y):
            m.d.sync += [slot.eq(slot + 1), expected.eq(expected + 1)]

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
        m.d.sync += [valid1.eq(take_y), addr1.eq(row_base + col_word), gate1.eq(row_gate)]
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
            rp.addr.eq(Mux(readout, read_addr, row_base + col_word)),
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
                         taken.eq(0), in_slot.eq(0), tile_row.eq(0), ring_end.eq(2 * rows),
                         expected.eq(0),
                         tile_slot.eq(0),
                         tile_last_row.eq(token_tiles.last_row(self.cmd.p.m, rows)),
                         col_word.eq(0), slot.eq(0), read_addr.eq(0), read_token.eq(0),
                         read_word.eq(0)]
        return m
