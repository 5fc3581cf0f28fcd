"""The compute unit's gather front end: an on-chip activation memory and an expert queue's token
ids in, the array's ``act`` stream out (:func:`golden.linear.gather`)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw import multiplier
from hw.compute_unit_layouts import Layouts
from hw.credit_buffer import CreditBuffer, full_rate_depth
from hw.multiplier import Multiplier
from hw.select import select
from hw.sliced_memory import SlicedMemory
from moeaccel.config import DesignConfig
from sim.timing import gather as timing


def memory_elements(cfg: DesignConfig) -> int:
    """Activations the memory holds: ``hardware.buffers.activation_bytes`` of ``operand_bits``."""
    return cfg.hardware.buffers.activation_bytes * 8 // cfg.hardware.compute_unit.operand_bits


def write_lanes(cfg: DesignConfig) -> int:
    """Activations per ``write`` beat: the DRAM channel's elements per cycle, rounded down to a
    power of two (so a word address is an element address without its low bits)."""
    per_cycle = int(cfg.hardware.dram.bytes_per_cycle * 8 // cfg.hardware.compute_unit.operand_bits)
    lanes = 1
    while lanes * 2 <= min(max(per_cycle, 1), memory_elements(cfg)):
        lanes *= 2
    return lanes


class GatherLayouts:
    """Payloads of :class:`Gather`.

    * ``command``: ``m`` queue entries (token ids), reduction ``k``, ``n`` outputs: the same
      fields and meaning as the compute unit's command;
    * ``write``: one memory word, ``addr`` (word address) and ``data`` (:func:`write_lanes`
      signed activations; element address ``addr * write_lanes + lane``);
    * ``token``: a token id, the row of the ``[tokens, k]`` row-major matrix in the memory.
    """

    def __init__(self, cfg: DesignConfig):
        cu = cfg.hardware.compute_unit
        elements, lanes = memory_elements(cfg), write_lanes(cfg)
        cu_cmd = Layouts(cfg).command
        self.command = data.StructLayout({"m": cu_cmd["m"].shape, "k": cu_cmd["k"].shape,
                                          "n": cu_cmd["n"].shape})
        self.write = data.StructLayout({
            "addr": unsigned(max(1, (elements // lanes - 1).bit_length())),
            "data": data.ArrayLayout(signed(cu.operand_bits), lanes),
        })
        self.token = unsigned(max(1, (elements - 1).bit_length()))


class Gather(wiring.Component):
    """Streams the rows ``x[token_ids]`` of the activation memory into the compute unit's ``act``
    in its tile order: the array's inputs of :func:`golden.linear.expert_linear`.

    The memory holds ``x [tokens, k]`` row-major (element ``t * k + kk``), loaded through
    ``write`` (one word of :func:`write_lanes` activations per beat, at any time the memory is
    not being read for the same words; writes and gathers of other words may overlap). A ``cmd``
    ``{m, k, n}`` (the compute unit's GEMM; give both blocks the same one) is followed by ``m``
    token ids on ``token`` (an expert queue, repeats allowed). For each token tile of ``rows``
    ids the unit emits ``ceil(n/cols) * k`` ``act`` beats, lane ``r`` of step ``kk`` being
    ``x[id_r, kk]`` (lanes past ``m`` are don't-care), as :class:`hw.compute_unit.ComputeUnit`
    expects.

    Memory: one ``write_lanes``-wide write port and ``rows`` read ports (one per act lane; on an
    FPGA a memory with ``rows`` read ports is ``rows`` replicas of the buffer, or a
    ``rows``-banked staging buffer in a larger design). It is a :class:`hw.sliced_memory.
    SlicedMemory`: bit slices as wide as one block RAM holding every word (ulx3s: 3096 words of
    128 bits as 32 DP16KD in 4096x4 mode per replica, instead of Yosys' 27 as 512x36 seven deep
    with an 8:1 multiplexer after the RAMs), so each read goes from the RAM straight into the
    read word's register. A write never targets a word being read (above), so read-during-write
    collisions are left undefined and Yosys adds no forwarding logic either. Token ids are turned
    into row bases ``id * k`` by a :class:`hw.multiplier.Multiplier` (the DSP with its input and
    output registers: a token id goes from the queue straight into the DSP, the product straight
    into the bank's register). Size (ulx3s: 1 read port, YoWASP
    Yosys ``synth_ecp5`` of the block alone): 520 LUT4, 227 FF, 1 MULT18X18D and 32 DP16KD.

    Timing (:mod:`sim.timing.gather`): token ids are taken one per cycle from the cycle after the
    command into the multiplier's ``MULTIPLY_STAGES`` = 2 stages, which advance together; a row
    base leaving them is written into its tile's bank unless that bank still streams its
    previous tile, in which case the pipeline holds (and takes no id): ``token.ready`` and the
    pipeline's enable are one gate after flip-flops (``head_free``, a look-ahead register). The
    row bases of a token tile fill one of two banks while the other bank streams, so with
    ``k * ceil(n/cols) >= rows`` the act stream runs one beat per cycle after the first tile's row
    bases (``latency``). The read address of the next beat is a register (stepped or reloaded a
    cycle ahead), not an add before the RAMs; the step decisions (last step of a row, last column
    tile, last token tile) and ``token.ready``'s "ids left" are registered flags, not compares.
    ``READ_STAGES`` = 2 read stages of the memory: the synchronous read, then the read word
    registered (on ECP5 the block RAMs' own output registers); then ``SELECT_STAGES`` = 1: the
    lane's element is picked within each group of lanes (ulx3s: 4 lanes, 8 block RAMs) into a
    register per group, which the placer can put by its RAMs, then the group is picked into
    ``OUTPUT_STAGES`` = 1 output FIFO (:class:`hw.credit_buffer.CreditBuffer`,
    ``full_rate_depth(ISSUE_STAGES)`` entries, ``ISSUE_STAGES`` = ``READ_STAGES + SELECT_STAGES``),
    which ``act`` leaves (``act.valid`` a flip-flop). (With the 16:1 lane multiplexer straight from
    the RAMs, a RAM placed across the die from it made the routed critical path: 11.86 ns, 7.5 ns
    of it wire.) A beat is issued only with one of the FIFO's credits (a register), so the read
    stages never stall and ``act.ready`` reaches only the FIFO's pointers and credit count, never
    the block RAMs' enables or the address logic; with ``act`` always ready the credits never run
    out. The next command is accepted the cycle after the last act beat was issued to the read
    stages.

    Members
    -------
    write : In(stream of ``GatherLayouts.write``)
    cmd : In(stream of ``GatherLayouts.command``)
    token : In(stream of ``GatherLayouts.token``)
    act : Out(stream of ``Layouts.act``), the compute unit's ``act``
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.layouts = lay = GatherLayouts(cfg)
        super().__init__({
            "write": In(stream.Signature(lay.write)),
            "cmd": In(stream.Signature(lay.command)),
            "token": In(stream.Signature(lay.token)),
            "act": Out(stream.Signature(Layouts(cfg).act)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        rows, lanes = cu.rows, write_lanes(self.cfg)
        lane_bits = lanes.bit_length() - 1
        elements = memory_elements(self.cfg)
        assert timing.READ_STAGES == 2

        m.submodules.memory = memory = SlicedMemory(shape=self.layouts.write["data"].shape,
                                                    depth=elements // lanes,
                                                    collisions_undefined=True,
                                                    read_stages=timing.READ_STAGES)
        wp = memory.write_port()
        m.d.comb += [wp.addr.eq(self.write.p.addr), wp.data.eq(self.write.p.data),
                     wp.en.eq(self.write.valid), self.write.ready.eq(1)]

        busy = Signal()
        command = Signal(self.layouts.command, reset_less=True)
        addr_shape = unsigned(max(1, (elements - 1).bit_length()))
        data_reg = dict(reset_less=True)    # loaded before use: no reset (control state has one)

        # collector: token ids -> row bases (``id * k`` through the pipelined multiplier), two
        # banks of `rows`. An id is taken into the multiplier with its tag (bank, row, last of
        # its tile); MULTIPLY_STAGES enabled cycles later its product is written into the bank,
        # if the bank is not full (still streaming its previous tile), else the pipeline holds.
        base = [[Signal(addr_shape, name=f"base{b}_{r}", **data_reg) for r in range(rows)]
                for b in range(2)]
        full = Signal(2)
        fill_bank = Signal(**data_reg)
        fill_row = Signal(range(rows), **data_reg)
        ids_left = Signal.like(command.m, **data_reg)
        # ``ids_left != 0`` and ``ids_left == 1`` as registers (set with the command, updated
        # with each id taken), so ``token.ready`` is one gate after flip-flops (ids are left only
        # while busy: the last beat needs the last id's bank full)
        ids_some, ids_one = Signal(), Signal()
        assert timing.MULTIPLY_STAGES == multiplier.STAGES
        m.submodules.row_base = mult = Multiplier(self.layouts.token, command.k.shape())
        tags = data.StructLayout({"valid": 1, "bank": 1, "row": range(rows), "last": 1})
        tag = [Signal(tags, name=f"tag{s}") for s in range(1, timing.MULTIPLY_STAGES + 1)]
        head = tag[-1]                      # the id whose product ``mult.p`` is
        # ``head_free`` = head's bank is not full, a register (the look-ahead of ``full`` and of
        # the bank the head holds next cycle), so the pipeline's enable is one gate after
        # flip-flops
        head_free = Signal(init=1)
        pipe_en, take, write = Signal(), Signal(), Signal()
        row_base = Signal(addr_shape)
        m.d.comb += [pipe_en.eq(~head.valid | head_free),
                     write.eq(head.valid & head_free),
                     self.token.ready.eq(ids_some & pipe_en),
                     take.eq(self.token.ready & self.token.valid),
                     mult.a.eq(self.token.p), mult.b.eq(command.k), mult.en.eq(pipe_en),
                     row_base.eq(mult.p)]
        with m.If(pipe_en):
            m.d.sync += [tag[0].valid.eq(take), tag[0].bank.eq(fill_bank),
                         tag[0].row.eq(fill_row), tag[0].last.eq((fill_row == rows - 1) | ids_one)]
            m.d.sync += [later.eq(earlier) for earlier, later in zip(tag, tag[1:])]
        with m.If(take):
            m.d.sync += [ids_left.eq(ids_left - 1), ids_some.eq(~ids_one),
                         ids_one.eq(ids_left == 2)]
            with m.If((fill_row == rows - 1) | ids_one):
                m.d.sync += [fill_bank.eq(~fill_bank), fill_row.eq(0)]
            with m.Else():
                m.d.sync += fill_row.eq(fill_row + 1)
        set_full = Signal(2)
        with m.If(write):
            for b in range(2):
                for r in range(rows):
                    with m.If((head.bank == b) & (head.row == r)):
                        m.d.sync += base[b][r].eq(row_base)
            with m.If(head.last):
                m.d.comb += set_full.eq(1 << head.bank)

        # streamer: bank `play_bank` -> one read per act beat
        play_bank = Signal(**data_reg)
        kk = Signal.like(command.k, **data_reg)
        # command.k - 3, and k == 1, k == 2, registered with the command (so the step flags
        # below compare kk with registers only, never through an adder)
        k_less3 = Signal.like(command.k, **data_reg)
        k_one, k_two = Signal(**data_reg), Signal(**data_reg)
        cols_left = Signal.like(command.n, **data_reg)
        rows_left = Signal.like(command.m, **data_reg)
        issue = Signal()
        clear_full = Signal(2)
        # ``play_full`` = full[play_bank], a register (so ``issue`` is one gate after flip-flops;
        # a bank is full only while busy). A beat is issued only with a credit of the output
        # FIFO, so the read stages never stall and ``act.ready`` reaches only the FIFO.
        play_full = Signal()
        m.submodules.output = output = CreditBuffer(Layouts(self.cfg).act,
                                                    full_rate_depth(timing.ISSUE_STAGES))
        m.d.comb += [issue.eq(play_full & output.credit), output.take.eq(issue)]
        wiring.connect(m, output.o, wiring.flipped(self.act))
        accept = Signal()
        m.d.comb += accept.eq(self.cmd.valid & self.cmd.ready)
        # the step decisions as registers: ``kk == k_last`` (``last_step``; ``near_step`` =
        # ``kk + 1 == k_last``, which it becomes when kk steps), ``kk == 0``, ``cols_left <= cols``,
        # ``rows_left <= rows``, and the tile's (``tile_end``) and command's (``cmd_end``) last
        # beat. They change only when a beat is issued (their next values, formed from registers
        # alone) or in the cycle after a command's handshake (``fresh``: the command's values,
        # from ``k == 1``, ``k == 2``, ``n <= cols``, ``m <= rows`` registered with it). So
        # ``issue`` is only the flip-flops' enable, never inside their data logic. A command's
        # first beat is issued MULTIPLY_STAGES + 2 cycles after its handshake at the earliest (an
        # id taken, multiplied, written, then its bank full), after ``fresh``. (No reset: loaded
        # by every command before its first beat.)
        fresh = Signal()
        m.d.sync += fresh.eq(accept)
        n_one, m_one = Signal(**data_reg), Signal(**data_reg)
        last_step, kk_zero, near_step = (Signal(name=n, **data_reg)
                                         for n in ("last_step", "kk_zero", "near_step"))
        last_col_tile, last_row_tile = Signal(**data_reg), Signal(**data_reg)
        tile_end, cmd_end = Signal(**data_reg), Signal(**data_reg)
        step_n, col_n, row_n = Signal(), Signal(), Signal()
        m.d.comb += [step_n.eq(Mux(last_step, k_one, near_step)),
                     col_n.eq(Mux(last_step, Mux(last_col_tile, n_one, cols_left <= 2 * cu.cols),
                                  last_col_tile)),
                     row_n.eq(Mux(tile_end, rows_left <= 2 * cu.rows, last_row_tile))]
        with m.If(fresh):
            m.d.sync += [last_step.eq(k_one), near_step.eq(k_two), last_col_tile.eq(n_one),
                         last_row_tile.eq(m_one), tile_end.eq(k_one & n_one),
                         cmd_end.eq(k_one & n_one & m_one), kk_zero.eq(1)]
        with m.Elif(issue):
            m.d.sync += [last_step.eq(step_n),
                         near_step.eq(Mux(last_step, k_two, kk == k_less3)),
                         last_col_tile.eq(col_n), last_row_tile.eq(row_n),
                         tile_end.eq(step_n & col_n), cmd_end.eq(step_n & col_n & row_n),
                         kk_zero.eq(last_step)]
        with m.If(issue):
            m.d.sync += kk.eq(Mux(last_step, 0, kk + 1))
            with m.If(last_step):
                m.d.sync += cols_left.eq(Mux(last_col_tile, command.n, cols_left - cu.cols))
            with m.If(tile_end):
                m.d.comb += clear_full.eq(1 << play_bank)
                m.d.sync += [rows_left.eq(rows_left - cu.rows), play_bank.eq(~play_bank)]
            with m.If(cmd_end):
                m.d.sync += busy.eq(0)
        full_set = Signal(2)
        m.d.comb += full_set.eq(full | set_full)
        # (both banks are free when a command is accepted, whichever fill_bank or play_bank
        # was); the bank played next is the other one after a tile's last beat (``tile_end``),
        # which clears the bank played now. ``head_free`` for the bank the head holds next
        # cycle: both outcomes (a beat issued or not) from registers, ``issue`` picks last
        head_bank_n = Mux(pipe_en, tag[-2].bank if len(tag) > 1 else fill_bank, head.bank)
        busy_n = full_set.bit_select(head_bank_n, 1)
        m.d.sync += [full.eq(full_set & ~clear_full),
                     head_free.eq(~busy_n | (issue & tile_end & (head_bank_n == play_bank))),
                     play_full.eq(Mux(issue & tile_end, full_set.bit_select(~play_bank, 1),
                                      full_set.bit_select(play_bank, 1)))]

        # read address `base[play_bank][r] + kk` kept in a register one cycle ahead (no add or
        # bank mux before the block RAMs' address pins): +1 after a beat that is not its tile
        # row's last step, else reloaded with the row base of the bank played next cycle. Both
        # outcomes (a beat issued or not) are formed from registers and ``issue`` picks one
        # last, so the consumer's ``ready`` only reaches the final multiplexer.
        # read stages: `rows` read ports of two stages (the read, the word registered), then
        # the lane's element picked from the registered word in two steps: within each group
        # of lanes into a register (one per group, so it can sit by the group's block RAMs),
        # then the group, into the output FIFO
        valid = [Signal(name=f"valid{s}") for s in range(1, timing.ISSUE_STAGES + 1)]
        m.d.sync += [later.eq(earlier) for earlier, later in zip([issue, *valid], valid)]
        m.d.comb += output.i.valid.eq(valid[-1])
        assert timing.SELECT_STAGES == 1
        in_group = (lane_bits + 1) // 2     # lane bits resolved by the group registers
        group = 1 << in_group
        for r in range(rows):
            port = memory.read_port()
            addr = Signal(addr_shape, name=f"addr{r}", **data_reg)
            writing = write & (head.row == r)

            def reload(bank):
                """The row base of ``bank``'s row ``r`` next cycle (the one being written, if so)."""
                return Mux(writing & (head.bank == bank), row_base,
                           Mux(bank, base[1][r], base[0][r]))

            if_issue = Mux(last_step, reload(play_bank ^ last_col_tile), addr + 1)
            # (idle with ``kk_zero``: reloaded every cycle from the cycle after ``fresh``, which
            # sets ``kk_zero``: from handshake + 2, before the first beat at handshake +
            # MULTIPLY_STAGES + 2, so a command's handshake need not reach the address)
            if_idle = Mux(kk_zero, reload(play_bank), addr)
            m.d.sync += addr.eq(Mux(issue, if_issue, if_idle))
            lane1 = Signal(range(lanes), name=f"lane1_{r}", **data_reg)
            lane2 = Signal(range(lanes), name=f"lane2_{r}", **data_reg)
            group3 = Signal(range(lanes // group), name=f"group3_{r}", **data_reg)
            m.d.comb += [port.addr.eq(addr >> lane_bits), port.en.eq(1)]
            m.d.sync += [lane1.eq(addr[:lane_bits] if lane_bits else 0), lane2.eq(lane1),
                         group3.eq(lane2 >> in_group)]
            word2 = port.data           # read stage 2: on ECP5 the block RAMs' output registers
            picks = [Signal(signed(cu.operand_bits), name=f"pick{r}_{g}", **data_reg)
                     for g in range(lanes // group)]
            for g, pick in enumerate(picks):
                m.d.sync += pick.eq(select([word2[g * group + i] for i in range(group)],
                                           lane2[:in_group]))
            m.d.comb += output.i.p[r].eq(select(picks, group3))

        m.d.comb += self.cmd.ready.eq(~busy)
        with m.If(accept):
            m.d.sync += [busy.eq(1), command.eq(self.cmd.p), ids_left.eq(self.cmd.p.m),
                         ids_some.eq(self.cmd.p.m != 0), ids_one.eq(self.cmd.p.m == 1),
                         kk.eq(0), k_less3.eq(self.cmd.p.k - 3), k_one.eq(self.cmd.p.k == 1),
                         k_two.eq(self.cmd.p.k == 2), n_one.eq(self.cmd.p.n <= cu.cols),
                         m_one.eq(self.cmd.p.m <= cu.rows), cols_left.eq(self.cmd.p.n),
                         rows_left.eq(self.cmd.p.m),
                         fill_bank.eq(0), fill_row.eq(0), play_bank.eq(0)]
        return m

