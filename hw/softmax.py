"""The single-pass softmax unit: rows of logits in, probabilities and ``{max, 1/sum}`` out.

Arithmetic is exactly :mod:`golden.softmax` (base 2, integer running max, shift-rescaled sum, one
reciprocal per row); widths come from :class:`golden.softmax.Formats`. Timing is exactly
:mod:`sim.timing.softmax`; ``tests/hw/test_softmax.py`` checks both on Verilator.

Structure (three row stages joined by queues, so consecutive rows overlap)::

    i ──> accumulate ──{t, fl}──> row buffer (memory) ──> normalise ──> o
              │                                              ^
              └──{max, sum, n}──> row queue ──> reciprocal ──┘ {max, 1/sum, n}

* **accumulate** (10 stages, never stalls once a beat is accepted): 1-2 ``x * log2(e)`` in a DSP
  (:class:`hw.multiplier.Multiplier`: input, then output register); 3 round to ``z``; 4 table
  read ``(T, D)`` at the fraction's top bits and, beside it, the running max and the two shift
  amounts (they need only the exponent); 5-6 ``D * r`` in a DSP; 7 ``t = T + round(D * r)``
  (one carry chain); 8 the new term ``(t << L) >> below``, ``{t, fl}`` written to the row
  buffer; 9 running sum (one shift-add: the block's only loop); 10 the finished row's ``{max,
  sum, length}`` pushed from registers into a 2-deep row queue. A new row is accepted only
  while fewer than :data:`sim.timing.softmax.ROW_CREDITS` rows wait for the divider. With
  ``accumulate_interval = 2`` an element is accepted at most every other cycle and the running
  sum takes two stages, 9 its coarse shift (by multiples of 4, registered) and 10 its fine
  shift (a 4:1 multiplexer) and add, so the loop's multiplexers and carry chain are split over
  two cycles (11 stages).
* **reciprocal**: a radix-``2^k`` divider (``k = divider_bits_per_cycle`` quotient bits per
  cycle, the digit chosen by ``2^k - 1`` parallel compares against multiples of the sum
  precomputed when the row is taken) computes ``floor(2^(RF+SF) / sum)`` once per row. The
  remainder is held as its ``2^k`` candidates and the compares' signs that pick one, so a step
  is the pick (a multiplexer on registers) and the compares' carry chains into registers.
* **normalise** (7 stages, never stalls): 1-2 buffer read (a :class:`hw.block_ram.BlockRam` with
  two read stages, the second the block RAM's output register); 3-4 the partial products of
  ``t * R`` in DSPs (their input registers take the RAM's data), beside them ``max - fl`` (``fl``
  registered in 3, the difference in 4); 5 their sum; 6 the shift; 7 round, saturate to 1.0, into
  an output queue of ``OUTPUT_QUEUE`` beats. A read is issued only while the reads in flight plus
  the queued beats are fewer (a credit counter), so ``o.ready`` drives no stage.

The row buffer holds ``(ROW_CREDITS + 2) * max_row_length`` entries rounded up to a power of
two: rows in flight are at most the credited ones, the one in the divider and the one being
read, so the buffer can never overflow and needs no full flag.

Parameters
----------
cfg : DesignConfig
    ``cfg.hardware.softmax`` sets every width and size. Only ``lanes == 1`` is implemented.

Members
-------
i : In(stream.Signature(input_layout))
    Logits, one per beat: ``logit`` (signed ``input_bits``, ``input_frac_bits`` fraction bits)
    and ``last`` (ends the row). A row is also ended after ``max_row_length`` elements.
o : Out(stream.Signature(output_layout))
    Probabilities in input order, one per beat: ``prob`` (unsigned, ``prob_frac_bits`` fraction
    bits, <= 1.0), ``last`` (the row's last element) and, constant over the row, ``max`` (the
    integer base-2 row maximum ``m``) and ``recip`` (``1/sum``, ``recip_frac_bits`` fraction
    bits): a consumer that fuses the normalisation uses ``2^(z - max) * recip`` and may ignore
    ``prob`` (attention A.V); one that wants probabilities ignores the pair (router).

Timing (:mod:`sim.timing.softmax`)
----------------------------------
One element per ``g = accumulate_interval`` cycles in, one per cycle out. A lone row of ``n``
elements presents its first probability ``(n - 1) * g + latency`` cycles after its first logit
was accepted, ``latency = 9 + g + ceil((RF+1) / divider_bits_per_cycle) + 2 + 7`` (32 with the
default config). Rows stream back to back at ``max(n * g, divider_interval)`` cycles per row
(``divider_interval`` = 14 by default).

Every multiply is a :class:`hw.multiplier.Multiplier` (registers only at its input and
output), data registers have no reset (only the stages' valid bits do).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.block_ram import BlockRam
from hw.credit_buffer import CreditBuffer
from hw.multiplier import Multiplier
from golden.softmax import Formats, exp2_table, table_field_bits
from moeaccel.config import DesignConfig, SoftmaxConfig
from moeaccel.errors import ConfigError
from sim.timing import softmax as timing

#: operand bits of one ECP5 MULT18X18D used unsigned (the normalise product is split at this)
_MULT_BITS = 17


def input_layout(sm: SoftmaxConfig) -> data.StructLayout:
    """Payload of the logit stream."""
    return data.StructLayout({"logit": signed(sm.input_bits), "last": 1})


def output_layout(sm: SoftmaxConfig) -> data.StructLayout:
    """Payload of the probability stream (see :class:`Softmax`)."""
    fm = Formats(sm)
    return data.StructLayout({"prob": unsigned(fm.prob_bits), "max": signed(fm.fl_bits),
                              "recip": unsigned(fm.recip_bits), "last": 1})


def _row_layout(sm: SoftmaxConfig) -> data.StructLayout:
    """One row in the queue between accumulate and the divider."""
    fm = Formats(sm)
    return data.StructLayout({"max": signed(fm.fl_bits), "sum": unsigned(fm.sum_bits),
                              "length": range(sm.max_row_length + 1)})


def _tag_layout(sm: SoftmaxConfig) -> data.StructLayout:
    """Per-element tags carried along the accumulate pipeline."""
    return data.StructLayout({"valid": 1, "first": 1, "last": 1,
                              "addr": range(buffer_depth(sm)),
                              "length": range(sm.max_row_length + 1)})


def _result_layout(sm: SoftmaxConfig) -> data.StructLayout:
    """One row from the divider to normalise."""
    fm = Formats(sm)
    return data.StructLayout({"max": signed(fm.fl_bits), "length": range(sm.max_row_length + 1),
                              "recip": unsigned(fm.recip_bits)})


def _element_layout(sm: SoftmaxConfig) -> data.StructLayout:
    """One row-buffer entry: ``2^frac`` and the integer exponent of an element."""
    fm = Formats(sm)
    return data.StructLayout({"t": unsigned(fm.t_bits), "fl": signed(fm.fl_bits)})


def buffer_depth(sm: SoftmaxConfig) -> int:
    """Row-buffer entries (see the module docstring)."""
    need = (timing.ROW_CREDITS + 2) * sm.max_row_length
    return 1 << (need - 1).bit_length()


class Softmax(wiring.Component):
    """Single-pass softmax over rows of a logit stream; see the module docstring."""

    def __init__(self, cfg: DesignConfig):
        sm = cfg.hardware.softmax
        if sm.lanes != 1:
            raise ConfigError("hardware.softmax.lanes", f"hw/softmax.py implements 1 lane, got {sm.lanes}")
        if sm.divider_bits_per_cycle > sm.sum_frac_bits:
            raise ConfigError("hardware.softmax.divider_bits_per_cycle",
                              f"must be <= sum_frac_bits ({sm.sum_frac_bits})")
        self._design = cfg
        self._sm = sm
        super().__init__({
            "i": In(stream.Signature(input_layout(sm))),
            "o": Out(stream.Signature(output_layout(sm))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        sm, fm = self._sm, Formats(self._sm)
        row = _row_layout(sm)
        m.submodules.rows = rows = SyncFIFO(width=row.size, depth=timing.ROW_CREDITS)
        # the writer stays a row ahead of the row being read (buffer_depth): no word is read in
        # the cycle it is written, so no collision logic; two read stages, the second the block
        # RAM's output register, which feeds the normalise multipliers' input registers directly
        m.submodules.buffer = buffer = BlockRam(width=_element_layout(sm).size,
                                                depth=buffer_depth(sm), read_stages=2)
        write = buffer.write
        read = _element_layout(sm)(buffer.read.data)
        m.d.comb += buffer.read.en.eq(1)
        rp = buffer.read.addr                            # the normalise stage's read address
        result = stream.Signature(_result_layout(sm)).create(path=("reciprocal",))
        row_taken = self._reciprocal(m, rows, row, result)
        self._accumulate(m, fm, rows, row, write, row_taken)
        self._normalise(m, fm, rp, read, result)
        return m

    # ------------------------------------------------------------------------------ accumulate
    def _accumulate(self, m: Module, fm: Formats, rows: SyncFIFO, row: data.StructLayout,
                    write, row_taken: Signal) -> None:
        sm = self._sm
        ef, pos_bits = sm.exp_frac_bits, fm.position_bits

        # Input handshake and row bookkeeping.
        in_row = Signal()                               # an element of this row was accepted
        count = Signal(range(sm.max_row_length + 1))    # elements accepted in this row
        pending = Signal(range(timing.ROW_CREDITS + 1))  # rows started, not yet taken by D
        wp = Signal(range(buffer_depth(sm)))
        # 1 with an input interval of 2: the running sum's shift has a stage of its own
        extra = timing.input_interval(self._design) - 1
        ready = Signal(init=1)
        m.d.comb += self.i.ready.eq(ready)
        accept = self.i.valid & self.i.ready
        first = ~in_row
        last = self.i.payload.last | (count == sm.max_row_length - 1)
        started = accept & first
        pending_next = Signal.like(pending)
        m.d.comb += pending_next.eq(pending + started - row_taken)
        m.d.sync += pending.eq(pending_next)
        if extra:
            # a register: never ready the cycle after an accept, else ready while the row goes
            # on or a row credit is free (the next state's, so no cycle is lost)
            m.d.sync += ready.eq(~accept & (in_row | (pending_next < timing.ROW_CREDITS)))
        else:
            m.d.comb += ready.eq(in_row | (pending < timing.ROW_CREDITS))
        with m.If(accept):
            m.d.sync += [wp.eq(wp + 1), in_row.eq(~last), count.eq(Mux(last, 0, count + 1))]

        # Each stage's tags: ``valid`` (reset) and the element's row bookkeeping (no reset: a
        # reset fans out to every flip-flop it reaches, and only ``valid`` needs it).
        tags = _tag_layout(sm)
        valid = [Signal(name=f"a{j}_valid") for j in range(1, 10 + extra)]
        tag = [Signal(tags, name=f"a{j}_tags", reset_less=True) for j in range(1, 10 + extra)]
        m.d.sync += [valid[0].eq(accept), tag[0].first.eq(first), tag[0].last.eq(last),
                     tag[0].addr.eq(wp), tag[0].length.eq(count + 1)]
        m.d.sync += [v.eq(u) for v, u in zip(valid[1:], valid)]
        m.d.sync += [v.eq(u) for v, u in zip(tag[1:], tag)]

        # Stages 1-2: x * log2(e) in the DSP (its input, then its output register).
        m.submodules.log2e = log2e = Multiplier(self.i.payload.logit.shape(),
                                                unsigned(fm.log2e.bit_length()))
        m.d.comb += [log2e.a.eq(self.i.payload.logit), log2e.b.eq(fm.log2e)]

        # Stage 3: z = x * log2(e), rounded to EF fraction bits.
        z = log2e.p
        if sm.input_frac_bits:
            z = (z + (1 << (sm.input_frac_bits - 1))) >> sm.input_frac_bits
        z3 = Signal(signed(fm.z_bits), reset_less=True)
        m.d.sync += z3.eq(z)
        frac, fl3 = z3[:ef], z3[ef:].as_signed()

        # Stage 4: the table read at the fraction's top bits (synchronous ROM) and, in parallel
        # (they need only the exponent), the running max and the two shift amounts of the sum
        # update (saturated to the bits that can shift their operand out: a larger shift gives
        # 0 either way). The comparison and both differences are parallel carry chains.
        t_bits, d_bits = table_field_bits(sm)
        word = data.StructLayout({"t": unsigned(t_bits), "d": unsigned(d_bits)})
        m.submodules.exp2 = rom = Memory(
            shape=word, depth=sm.exp_table_entries,
            init=[{"t": int(t), "d": int(d)} for t, d in exp2_table(sm)])
        lookup = rom.read_port()
        m.d.comb += lookup.addr.eq(frac[pos_bits:])
        pos4 = Signal(max(pos_bits, 1), reset_less=True)
        m.d.sync += pos4.eq(frac[:pos_bits])

        run_max = Signal(signed(fm.fl_bits), reset_less=True)
        grow = Signal()                                 # the element raises the row's max
        up = Signal(signed(fm.fl_bits + 1))
        down = Signal(signed(fm.fl_bits + 2))
        m.d.comb += [grow.eq(tag[2].first | (fl3 > run_max)), up.eq(fl3 - run_max),
                     down.eq(run_max - fl3 + fm.sum_right)]
        with m.If(valid[2] & grow):
            m.d.sync += run_max.eq(fl3)
        term_bits = fm.t_bits + fm.sum_left

        def saturate(amount, limit: int):
            """``amount`` (>= 0) in ``ceil_log2(limit + 1)`` bits, all ones if it does not fit."""
            n = ceil_log2(limit + 1)
            return Mux(amount.as_unsigned()[n:].any(), (1 << n) - 1, amount[:n])

        # per stage 4..9: the element's exponent, the row's max including it, the shift of the
        # old sum (all ones on a row's first element: the old sum shifts out entirely, no clear)
        # and the shift of the new term; delayed to the stages that use them
        rescale_bits = ceil_log2(fm.sum_bits + 1)
        shifts = data.StructLayout({"fl": signed(fm.fl_bits), "max": signed(fm.fl_bits),
                                    "rescale": rescale_bits,
                                    "below": ceil_log2(term_bits + 1)})
        sh = [Signal(shifts, name=f"a{j}_shifts", reset_less=True) for j in range(4, 10 + extra)]
        m.d.sync += [sh[0].fl.eq(fl3), sh[0].max.eq(Mux(grow, fl3, run_max)),
                     sh[0].rescale.eq(Mux(tag[2].first, (1 << rescale_bits) - 1,
                                          Mux(grow, saturate(up, fm.sum_bits), 0))),
                     sh[0].below.eq(Mux(grow, fm.sum_right, saturate(down, term_bits)))]
        m.d.sync += [v.eq(u) for v, u in zip(sh[1:], sh)]

        # Stages 5-6: D * r in the DSP; T waits beside it.
        m.submodules.interp = interp = Multiplier(unsigned(d_bits), pos4.shape())
        m.d.comb += [interp.a.eq(lookup.data.d), interp.b.eq(pos4)]
        base5, base6 = (Signal(t_bits, name=f"base{j}", reset_less=True) for j in (5, 6))
        m.d.sync += [base5.eq(lookup.data.t), base6.eq(base5)]

        # Stage 7: t = T + round(D * r / 2^P) as one carry chain ((T << P | half) + D * r, as
        # the half has no bit in common with T << P).
        if pos_bits:
            t = (((base6 << pos_bits) | (1 << (pos_bits - 1))) + interp.p) >> pos_bits
        else:
            t = base6 + interp.p
        t7 = Signal(fm.t_bits, reset_less=True)
        m.d.sync += t7.eq(t)

        # Stage 8: the new term (t << L) >> below; the element into the row buffer.
        term8 = Signal(term_bits, reset_less=True)
        m.d.sync += term8.eq((t7 << fm.sum_left) >> sh[3].below)
        m.d.comb += [write.en.eq(valid[6]), write.addr.eq(tag[6].addr),
                     write.data.eq(Cat(t7, sh[3].fl))]

        # Stage 9: run_sum = (run_sum >> rescale) + term: one shift-add per cycle, the loop of
        # this block. The shift is two multiplexer levels, coarse (by multiples of 8) then fine,
        # each from its own copy of the amount (half the fan-out each). With one element every
        # other cycle the coarse shift goes by multiples of 4, so the fine shift in front of the
        # add is a 4:1 multiplexer (an 8:1 one was 5 cells before the carry chain).
        run_sum = Signal(fm.sum_bits, reset_less=True)
        fine_bits = min(2 if extra else 3, rescale_bits)
        coarse = Signal(rescale_bits - fine_bits, reset_less=True)
        fine = Signal(fine_bits, reset_less=True)
        m.d.sync += [coarse.eq(sh[3].rescale[fine_bits:]), fine.eq(sh[3].rescale[:fine_bits])]
        scaled = Value.cast(run_sum)
        if len(coarse):
            scaled = Array(scaled >> (c << fine_bits) for c in range(1 << len(coarse)))[coarse]
        if extra:
            # one element every other cycle: the coarse shift is registered (stage 9), the fine
            # shift and the add follow in stage 10, which the next element's shift reads from
            scaled9 = Signal(fm.sum_bits, reset_less=True)
            term9 = Signal.like(term8, reset_less=True)
            fine9 = Signal.like(fine, reset_less=True)
            m.d.sync += [scaled9.eq(scaled), term9.eq(term8), fine9.eq(fine)]
            scaled, term8, fine = scaled9, term9, fine9
        scaled = Array(scaled >> f for f in range(1 << fine_bits))[fine]
        with m.If(valid[7 + extra]):
            m.d.sync += run_sum.eq(scaled + term8)

        # Stage 10 (11): the finished row {max, sum, length} into the row queue, from registers.
        finished = row(rows.w_data)
        done = 8 + extra
        m.d.comb += [rows.w_en.eq(valid[done] & tag[done].last), finished.max.eq(sh[done - 3].max),
                     finished.sum.eq(run_sum), finished.length.eq(tag[done].length)]

    # ------------------------------------------------------------------------------ reciprocal
    def _reciprocal(self, m: Module, rows: SyncFIFO, row: data.StructLayout,
                    result: stream.Interface) -> Signal:
        """The iterative divider: pops a row from ``rows``, streams its ``{max, length, recip}``
        out on ``result``. Returns the strobe that takes a row (and returns its credit)."""
        sm, fm = self._sm, Formats(self._sm)
        k = sm.divider_bits_per_cycle
        iters = timing.divider_iterations(self._design)
        busy = Signal()
        done = result.valid
        steps = Signal(range(iters + 1))
        # j * sum for every digit j of radix 2^k, so that a step compares against all of them
        # in parallel (one carry chain deep) instead of k dependent restoring steps
        multiples = [Signal(fm.sum_bits + k, name=f"divisor_x{j}") for j in range(1, 1 << k)]
        # The remainder is kept as its 2^k candidates (candidate[j] = (previous << k) - j * sum,
        # candidate[0] the shifted previous) and the compares' sign bits that pick one: a step
        # starts with that pick (a multiplexer on registers) and ends with its compares' carry
        # chains straight in registers. The quotient register takes each step's digit a cycle
        # late (decoded from the registered signs); ``recip`` appends the last step's. Taking a
        # row loads every candidate with the first remainder, so the first step's pick needs no
        # particular signs: they are written only by the steps, each straight from its carry
        # chain (no multiplexer after it), and the first step's digit, from the previous row's
        # signs, is shifted out above ``recip``'s bits (``iters * k >= recip_bits``).
        candidate = [Signal(fm.sum_bits + 1, name=f"remainder{j}") for j in range(1 << k)]
        short = [Signal(name=f"below_x{j}") for j in range(1, 1 << k)]  # (prev << k) < j * sum
        quotient = Signal(iters * k)                     # all bits shifted in per row: no clear
        hold = Signal(row)                               # the row's max and length
        taken = result.valid & result.ready

        def pick(short: list, options: list, low: int = 0) -> Value:
            """``options[d - low]`` for the digit ``d``: the largest ``j`` whose compare did not come
            out short. The flags are a thermometer (``short[j-1]`` implies ``short[j]``), so
            the pick is a balanced tree of 2:1 multiplexers, ``k`` deep: the middle flag
            chooses the half (two LUT levels for ``k = 2``, where a priority chain took 3)."""
            if len(options) == 1:
                return Value.cast(options[0])
            mid = len(options) // 2
            return Mux(short[low + mid - 1], pick(short, options[:mid], low),
                       pick(short, options[mid:], low + mid))

        def digit_of(short: list) -> Value:
            """The digit chosen by the compares' flags."""
            return pick(short, list(range(1 << k)))

        head = row(rows.r_data)
        pop = rows.r_rdy & ~busy & (~done | taken)
        m.d.comb += rows.r_en.eq(pop)
        with m.If(taken):
            m.d.sync += done.eq(0)
        with m.If(pop):
            assert iters * k >= fm.recip_bits
            first = 1 << (sm.recip_frac_bits + sm.sum_frac_bits - iters * k)
            m.d.sync += [busy.eq(1), steps.eq(iters), *(c.eq(first) for c in candidate),
                         hold.eq(head)]
            # j * sum as shifted copies added (a constant multiply would go to a slow MULT18)
            m.d.sync += [mult.eq(sum(head.sum << b for b in range(k) if j >> b & 1))
                         for j, mult in enumerate(multiples, 1)]
        with m.Elif(busy):
            # remainder < sum always (it starts below 2^sum_frac_bits <= sum), so the next k
            # quotient bits are the largest digit j with (remainder << k) >= j * sum
            remainder = pick(short, candidate)
            shifted = Signal(len(candidate[0]) + k)
            m.d.comb += shifted.eq(remainder << k)
            for j, (mult, below) in enumerate(zip(multiples, short), 1):
                diff = Signal(signed(len(shifted) + 1), name=f"step_minus_x{j}")
                m.d.comb += diff.eq(shifted - mult)
                m.d.sync += [candidate[j].eq(diff[:len(candidate[j])]), below.eq(diff[-1])]
            m.d.sync += [candidate[0].eq(shifted[:len(candidate[0])]),
                         quotient.eq(((quotient << k) | digit_of(short))[:len(quotient)]),
                         steps.eq(steps - 1)]
            with m.If(steps == 1):
                m.d.sync += [busy.eq(0), done.eq(1)]
        recip = ((quotient << k) | digit_of(short))[:fm.recip_bits]
        m.d.comb += [result.payload.max.eq(hold.max), result.payload.length.eq(hold.length),
                     result.payload.recip.eq(recip)]
        return pop

    # ------------------------------------------------------------------------------ normalise
    def _normalise(self, m: Module, fm: Formats, rp: Signal, read, result: stream.Interface
                   ) -> None:
        sm = self._sm
        active = Signal()
        remaining = Signal(range(sm.max_row_length + 1))
        row_max = Signal(signed(fm.fl_bits))
        row_recip = Signal(fm.recip_bits)

        # The pipeline never stalls: a read is issued only while the output queue has room for
        # it and for every read in flight (a registered credit), so no ready reaches its stages.
        m.submodules.out = out = CreditBuffer(self.o.payload.shape(), timing.OUTPUT_QUEUE)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        one_left = Signal()                              # remaining == 1 (registered)
        issue = active & out.credit
        final = issue & one_left
        take = result.valid & result.ready
        m.d.comb += [result.ready.eq(~active | final), out.take.eq(issue)]
        with m.If(issue):
            m.d.sync += [rp.eq(rp + 1), remaining.eq(remaining - 1), one_left.eq(remaining == 2)]
            with m.If(final):
                m.d.sync += active.eq(0)
        with m.If(take):
            m.d.sync += [active.eq(1), remaining.eq(result.payload.length),
                         one_left.eq(result.payload.length == 1),
                         row_max.eq(result.payload.max), row_recip.eq(result.payload.recip)]

        # One stage per hop: 1-2 the buffer read (the block RAM's two read stages); 3-4 the
        # partial products t * R (R split at the DSP's width) in the DSPs, beside them the shift
        # max - fl; 5 their sum; 6 the shift (only the bits rounding keeps); 7 round, saturate,
        # into the output queue. Only the valid bits have a reset.
        prod_bits = fm.t_bits + fm.recip_bits
        split = min(fm.recip_bits, _MULT_BITS)
        kept = prod_bits - (fm.prob_shift - 1)          # bits of (t * R) >> (drop + shift - 1)
        tags = data.StructLayout({"last": 1, "max": signed(fm.fl_bits),
                                  "recip": unsigned(fm.recip_bits)})
        valid = [Signal(name=f"n{j}_valid") for j in range(1, 7)]
        tag = [Signal(tags, name=f"n{j}", reset_less=True) for j in range(1, 7)]
        m.d.sync += [valid[0].eq(issue), tag[0].last.eq(one_left), tag[0].max.eq(row_max),
                     tag[0].recip.eq(row_recip)]
        m.d.sync += [v.eq(u) for v, u in zip(valid[1:], valid)]
        m.d.sync += [v.eq(u) for v, u in zip(tag[1:], tag)]
        m.submodules.lo = lo = Multiplier(read.t.shape(), unsigned(split))
        m.d.comb += [lo.a.eq(read.t), lo.b.eq(tag[1].recip[:split])]
        hi_p = 0
        if fm.recip_bits > split:
            m.submodules.hi = hi = Multiplier(read.t.shape(), unsigned(fm.recip_bits - split))
            m.d.comb += [hi.a.eq(read.t), hi.b.eq(tag[1].recip[split:])]
            hi_p = hi.p
        # the shift max - fl: the element's fl registered from the block RAM's output register
        # first (stage 3), the subtraction and clamp in stage 4 (the RAM can sit far from them)
        fl3 = Signal.like(read.fl, reset_less=True)
        drop = (tag[2].max - fl3).as_unsigned()
        drop4 = Signal(range(prod_bits + 1), reset_less=True)
        drop5 = Signal.like(drop4, reset_less=True)
        prod5 = Signal(prod_bits, reset_less=True)
        top6 = Signal(kept, reset_less=True)
        rounded = (top6 + 1) >> 1
        one = 1 << sm.prob_frac_bits
        m.d.sync += [
            fl3.eq(read.fl), drop4.eq(Mux(drop >= prod_bits, prod_bits, drop)),
            prod5.eq(lo.p + (hi_p << split)), drop5.eq(drop4),
            top6.eq((prod5 >> drop5) >> (fm.prob_shift - 1)),
        ]
        beat = Signal(self.o.payload.shape())
        m.d.comb += [beat.last.eq(tag[5].last), beat.max.eq(tag[5].max),
                     beat.recip.eq(tag[5].recip),
                     beat.prob.eq(Mux(rounded > one, one, rounded)),
                     out.i.valid.eq(valid[5]), out.i.payload.eq(beat)]
