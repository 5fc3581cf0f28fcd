"""The shared compute unit: one quantised linear layer ``y = requantise(x @ w + bias)`` at a time,
with its dimensions set per command, so one instance serves every linear layer of the model."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.activation import FusedActivation
from hw.compute_unit_layouts import Layouts
from hw.credit_buffer import CreditBuffer, full_rate_depth
from hw.register_slice import RegisterSlice
from hw.skid_buffer import SkidBuffer
from hw.mac_array import MacArray
from hw.requantise import Requantiser
from moeaccel.config import DesignConfig
from sim.timing import compute_unit as timing


class ComputeUnit(wiring.Component):
    """Quantised GEMM ``y[m, n] = requantise(bias[n] + x[m, k] @ w[k, n])`` on a ``rows x cols``
    output-stationary int MAC array (``hardware.compute_unit``), bit-exact with
    :func:`golden.linear.linear` (``out_bits = operand_bits``, or GELU's input width when the
    command's ``wide`` is set; GELU's output requantised to ``operand_bits`` when ``gelu`` is).

    A ``cmd`` beat starts a GEMM of ``m`` tokens, reduction ``k`` and ``n`` outputs (each
    1..``max_dim``; zero is not allowed), with its requantisation ``multiplier`` and ``shift``
    (0..``requant_max_shift``). The GEMM is cut into output tiles of ``rows`` tokens x ``cols``
    outputs, token tiles outer and output tiles inner: tile ``(i, j)`` covers tokens
    ``i*rows ..`` and outputs ``j*cols ..``. For each tile, in order:

    * ``bias``: one beat, ``bias[j*cols + c]`` in lane ``c``;
    * ``act`` and ``weight``: ``k`` beats each, taken together (one array step per pair):
      step ``kk`` carries ``x[i*rows + r, kk]`` in act lane ``r`` and ``w[kk, j*cols + c]`` in
      weight lane ``c``. Lanes past ``m`` or ``n`` in a partial tile are don't-care.
    * ``out``: one beat per valid token row of the tile, ``row`` = token index, lane ``c`` =
      ``y[row, j*cols + c]`` (lanes past ``n`` are don't-care), ``last`` on the GEMM's final beat.

    Timing (equal to :mod:`sim.timing.compute_unit`, asserted by ``tests/hw``): one array step per
    cycle when fed; a tile's results drain (one row per ``row_cycles = cols / output_lanes``
    cycles, 1 by default) while the next tile accumulates, so with ``k >= rows * row_cycles + 4``
    the array never waits; the last output of a tile is valid ``latency(cfg) + (rows - 1) *
    row_cycles`` cycles after its last step; a GEMM takes ``gemm_cycles(cfg, m, k, n)`` from the
    command handshake to its last output. A new command is accepted the cycle after
    the previous GEMM's last step, while its results still drain. ``act`` enters through a
    register slice (``ACT_STAGES`` = 1), so the step decision (a join of the act, weight and
    bias streams) starts at a flip-flop here: it costs no cycle when act beats are offered from
    the command on, one cycle after an act beat that arrives later (as from the gather).

    With the command's ``gelu`` flag the output rows go through the fused activation
    (:class:`hw.activation.FusedActivation`): the accumulators are requantised to GELU's input
    format (``wide`` is implied), GELU is applied on ``cols`` lanes and the result requantised
    with ``act_multiplier``/``act_shift`` to ``operand_bits``, bit-exact with
    ``requantise(gelu(linear(..., gelu.input_bits)), act_multiplier, act_shift, operand_bits)``
    as in :func:`golden.moe.expert_ffn`. Rows without it pass through unchanged; both take the
    same ``ACTIVATION_STAGES`` extra pipeline stages (part of ``latency``).

    Back-pressure: the pipeline after the array (requantiser, GELU, activation requantiser)
    always advances; its last stage writes into a :class:`hw.credit_buffer.CreditBuffer` (the
    output FIFO, ``full_rate_depth`` entries: every row in flight plus the credit's round trip),
    and the shadow bank drains a row only while the buffer's registered ``credit`` is high. So
    ``out.ready`` never reaches a pipeline register's enable. After the FIFO, a
    :class:`hw.skid_buffer.SkidBuffer` (no cycle) makes the ready the FIFO sees a flip-flop, and
    a :class:`hw.register_slice.RegisterSlice` (one cycle, part of ``latency``) makes ``out``'s
    valid and payload flip-flops with no multiplexer after them (the skid buffer's kept-or-passed
    choice is before the slice). With ``out`` always ready no row ever waits for a credit. With
    ``compute_unit.output_lanes`` set, the pipeline carries a row as ``row_cycles`` beats of
    ``output_lanes`` lanes (fewer GELU tables and requantiser multipliers) and reassembles it
    before the FIFO.

    The MoE front and back ends are separate blocks wired to ``act`` and ``out``: :class:`hw.gather.Gather` (activation memory +
    expert queue token ids) and :class:`hw.scatter.ScatterAccumulate` (``out[token] += gate *
    y``).

    Members
    -------
    cmd : In(stream of ``Layouts.command``)
    act : In(stream of ``Layouts.act``)
    weight : In(stream of ``Layouts.weight``)
    bias : In(stream of ``Layouts.bias``)
    out : Out(stream of ``Layouts.out``)
    stepped : Out(1)
        An array step happened in the previous cycle (a register, for counters: the step
        decision itself stays inside the unit).
    """

    def __init__(self, cfg: DesignConfig):
        self.cfg = cfg
        self.layouts = lay = Layouts(cfg)
        super().__init__({
            "cmd": In(stream.Signature(lay.command)),
            "act": In(stream.Signature(lay.act)),
            "weight": In(stream.Signature(lay.weight)),
            "bias": In(stream.Signature(lay.bias)),
            "out": Out(stream.Signature(lay.out)),
            "stepped": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cu = self.cfg.hardware.compute_unit
        m.submodules.array = array = MacArray(self.cfg)
        m.submodules.buffer = buffer = self._output_pipeline(m, array)
        # a skid buffer, so the consumers' ready reaches the FIFO through a flip-flop, then a
        # register slice: the consumers see flip-flops, not the FIFO's asynchronous LUT-RAM read
        # or the skid buffer's multiplexer
        assert timing.OUTPUT_STAGES == 1
        m.submodules.output_skid = output_skid = SkidBuffer(self.layouts.out)
        m.submodules.output = output = RegisterSlice(self.layouts.out)
        wiring.connect(m, buffer.o, output_skid.i)
        wiring.connect(m, output_skid.o, output.i)
        wiring.connect(m, output.o, wiring.flipped(self.out))
        # act enters through a register slice (``timing.ACT_STAGES``), so the step join below
        # starts at flip-flops here, not at the producer's (e.g. two gathers' ORed valids)
        assert timing.ACT_STAGES == 1
        m.submodules.act_in = act = RegisterSlice(self.layouts.act)
        wiring.connect(m, wiring.flipped(self.act), act.i)

        # the running command and the position of the next array step
        busy = Signal()
        command = Signal(self.layouts.command)
        k_less3 = Signal.like(command.k)         # k - 3 (wraps for k < 3: then never kk)
        k_one, k_two = Signal(), Signal()        # k == 1, k == 2
        near = Signal()                          # kk == k - 2: the next step's successor is last
        kk = Signal.like(command.k)               # reduction index of the next step
        rows_left = Signal.like(command.m)        # tokens from this tile on
        cols_left = Signal.like(command.n)        # outputs from this tile on
        row_base = Signal.like(command.m)

        # kk == 0, kk == k - 1, kk == k - 2 and the tile's position (last column tile, last row
        # tile) are registers; every counter's next value is computed from registers alone
        # (``busy`` tells a command load from a step), so the step decision (a join of the act,
        # weight and bias streams) reaches the counters only through their enables
        first, last = Signal(), Signal()
        last_col_tile, last_row_tile = Signal(), Signal()
        n_one_tile = Signal()                     # command.n <= cols
        step = Signal()
        # the join as three partial joins, each kept as a net (one LUT each), then their AND:
        # two LUT levels from the flip-flops (synthesis otherwise folds the partial joins into the
        # handshake logic around them, three levels deep)
        operands_ok, bias_ok, last_allowed = (Signal(name=name, attrs={"keep": 1}) for name in
                                              ("operands_ok", "bias_ok", "last_allowed"))
        m.d.comb += [
            operands_ok.eq(busy & act.o.valid & self.weight.valid),
            bias_ok.eq(~first | self.bias.valid),
            last_allowed.eq(~last | array.last_ok),
            step.eq(operands_ok & bias_ok & last_allowed),
            act.o.ready.eq(step),
            self.weight.ready.eq(step),
            self.bias.ready.eq(step & first),
            self.cmd.ready.eq(~busy),

            array.step_valid.eq(step),
            array.a.eq(act.o.p),
            array.w.eq(self.weight.p),
            array.bias.eq(self.bias.p),
            array.first.eq(first),
            array.last.eq(last),
            array.tile.row_base.eq(row_base),
            array.tile.rows.eq(Mux(last_row_tile, rows_left, cu.rows)),
            array.tile.multiplier.eq(command.multiplier),
            array.tile.shift.eq(command.shift),
            array.tile.wide.eq(command.wide | command.gelu),
            array.tile.gelu.eq(command.gelu),
            array.tile.act_multiplier.eq(command.act_multiplier),
            array.tile.act_shift.eq(command.act_shift),
            array.tile.last.eq(last_col_tile & last_row_tile),
        ]

        load = self.cmd.valid & ~busy             # never in a step's cycle (step needs busy)
        p = self.cmd.p
        with m.If(load):
            m.d.sync += [busy.eq(1), command.eq(p), k_less3.eq(p.k - 3),
                         k_one.eq(p.k == 1), k_two.eq(p.k == 2), n_one_tile.eq(p.n <= cu.cols)]
        with m.If(load | step):                   # the next array step
            m.d.sync += [kk.eq(Mux(busy & ~last, kk + 1, 0)),
                         first.eq(~busy | last),
                         last.eq(Mux(busy, Mux(last, k_one, near), p.k == 1)),
                         near.eq(Mux(busy, Mux(last, k_two, kk == k_less3), p.k == 2))]
        # the tile position steps the cycle after a tile's last step (``tile_done``, a register),
        # so the step decision reaches none of its enables. No last step reads it in that cycle
        # (a step's ``tile`` is kept by the array on last steps only): the
        # next last step is at least ``last_ok``'s round trip away (the array holds ``last_ok``
        # low the cycle after a last step), and a command loaded in that cycle takes priority.
        tile_done = Signal()
        m.d.sync += [tile_done.eq(step & last), self.stepped.eq(step)]
        with m.If(load):
            m.d.sync += [cols_left.eq(p.n), last_col_tile.eq(p.n <= cu.cols),
                         rows_left.eq(p.m), last_row_tile.eq(p.m <= cu.rows), row_base.eq(0)]
        with m.Elif(tile_done & ~last_col_tile):  # the next output tile
            m.d.sync += [cols_left.eq(cols_left - cu.cols),
                         last_col_tile.eq(cols_left <= 2 * cu.cols)]
        with m.Elif(tile_done):                   # the next token tile
            m.d.sync += [cols_left.eq(command.n), last_col_tile.eq(n_one_tile),
                         rows_left.eq(rows_left - cu.rows),
                         last_row_tile.eq(rows_left <= 2 * cu.rows),
                         row_base.eq(row_base + cu.rows)]
        with m.If(step & last & last_col_tile & last_row_tile):
            m.d.sync += busy.eq(0)
        return m

    def _output_pipeline(self, m: Module, array: MacArray) -> CreditBuffer:
        """Requantiser -> fused activation -> output FIFO for the shadow bank's rows.

        With ``row_cycles`` G > 1 a row leaves the shadow bank in G beats of ``lanes_out``
        lanes (group g = lanes ``g*lanes_out ..``; the shadow bank shifts the groups, so a beat
        is read from registers, not through a lane multiplexer), the first when the FIFO has a
        credit for the row, the others in the next cycles. At the end the first G - 1 groups
        wait in registers and the whole row is written into the FIFO with the last one. Rows
        and beats never stall inside."""
        cu = self.cfg.hardware.compute_unit
        groups = cu.row_cycles
        drain = array.drain
        m.submodules.requantiser = requantiser = Requantiser(self.cfg, lanes=cu.lanes_out)
        m.submodules.activation = activation = FusedActivation(self.cfg)
        # a row taken in cycle t is written into the FIFO in cycle t + in_flight
        in_flight = timing.REQUANT_STAGES + timing.ACTIVATION_STAGES - 1 + groups - 1
        buffer = CreditBuffer(self.layouts.out, full_rate_depth(in_flight))

        # a beat per cycle from a row's first group on; the first needs a credit for the row
        beat = Signal()
        m.d.comb += [
            beat.eq(drain.valid & (~array.drain_row_start | buffer.credit)),
            drain.ready.eq(~array.drain_row_start | buffer.credit),
            # drain_row_start implies drain.valid: the take is two flip-flops' AND
            buffer.take.eq(array.drain_row_start & buffer.credit),
            requantiser.i.valid.eq(beat),
            requantiser.i.p.eq(drain.p),
        ]
        wiring.connect(m, requantiser.o, activation.i)

        # deserialise: hold groups 0..G-2, write the row with the last one
        done = activation.o
        m.d.comb += [buffer.i.p.row.eq(done.p.row), buffer.i.p.last.eq(done.p.last)]
        if groups == 1:
            m.d.comb += [buffer.i.valid.eq(done.valid), buffer.i.p.data.eq(done.p.data)]
            return buffer
        out_group = Signal(range(groups))
        width = len(done.p.data.as_value())
        held = Signal(width * (groups - 1), reset_less=True)   # a shift register of groups
        with m.If(done.valid):
            m.d.sync += out_group.eq(Mux(out_group == groups - 1, 0, out_group + 1))
            m.d.sync += held.eq(Cat(held[width:], done.p.data))
        m.d.comb += [buffer.i.valid.eq(done.valid & (out_group == groups - 1)),
                     buffer.i.p.data.eq(Cat(held, done.p.data))]
        return buffer
