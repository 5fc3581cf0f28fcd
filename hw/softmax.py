"""The single-pass softmax unit: rows of logits in, probabilities and ``{max, 1/sum}`` out.

Arithmetic is exactly :mod:`golden.softmax` (base 2, integer running max, shift-rescaled sum, one
reciprocal per row); widths come from :class:`golden.softmax.Formats`. Timing is exactly
:mod:`sim.timing.softmax`; ``tests/hw/test_softmax.py`` checks both on Verilator.

Structure (three row stages joined by queues, so consecutive rows overlap)::

    i ──> accumulate ──{t, fl}──> row buffer (memory) ──> normalise ──> o
              │                                              ^
              └──{max, sum, n}──> row queue ──> reciprocal ──┘ {max, 1/sum, n}

* **accumulate** (8 stages, never stalls once a beat is accepted): 1 ``x * log2(e)``; 2 round
  to ``z``; 3 table read ``(T, D)`` at the fraction's top bits; 4 ``D * r``; 5 ``t = T +
  round(D * r)``; 6 running max and the two shift amounts, ``{t, fl}`` written to the row
  buffer; 7 running sum (one shift-add); 8 the finished row's ``{max, sum, length}`` pushed from
  registers into a 2-deep row queue. A new row is accepted only while fewer than
  :data:`sim.timing.softmax.ROW_CREDITS` rows wait for the divider.
* **reciprocal**: a radix-``2^k`` divider (``k = divider_bits_per_cycle`` quotient bits per
  cycle, the digit chosen by ``2^k - 1`` parallel compares against multiples of the sum
  precomputed when the row is taken) computes ``floor(2^(RF+SF) / sum)`` once per row. The
  remainder is held as its ``2^k`` candidates and the compares' signs that pick one, so a step
  is the pick (a multiplexer on registers) and the compares' carry chains into registers.
* **normalise** (6 stages, never stalls): 1 buffer read; 2 its data registered; 3 partial
  products of ``t * R`` and ``max - fl``; 4 their sum; 5 the shift; 6 round, saturate to 1.0,
  into an output queue of ``OUTPUT_QUEUE`` beats. A read is issued only while the reads in
  flight plus the queued beats are fewer (a credit counter), so ``o.ready`` drives no stage.

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
One element per cycle in and out. A lone row of ``n`` elements presents its first probability
``n - 1 + latency`` cycles after its first logit was accepted, ``latency = 8 + ceil((RF+1) /
divider_bits_per_cycle) + 2 + 6`` (29 with the default config). Rows stream back to back at
``max(n, divider_interval)`` cycles per row (``divider_interval`` = 14 by default).

Fmax (``moeaccel fpga --board ulx3s-85f --config ulx3s --blocks softmax --seed 1``): 102 MHz
alone, the critical path then in the host bridge, not in this block.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.block_ram import NO_COLLISION_LOGIC, registered_read
from hw.credit_buffer import CreditBuffer
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
        # the cycle it is written, so no collision logic after the block RAM
        m.submodules.buffer = buffer = Memory(shape=_element_layout(sm), depth=buffer_depth(sm),
                                              init=[], attrs=NO_COLLISION_LOGIC)
        write = buffer.write_port()
        rp = Signal(range(buffer_depth(sm)))             # the normalise stage's read address
        read = registered_read(m, buffer, rp, 1, "read")
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
        m.d.comb += self.i.ready.eq(in_row | (pending < timing.ROW_CREDITS))
        accept = self.i.valid & self.i.ready
        first = ~in_row
        last = self.i.payload.last | (count == sm.max_row_length - 1)
        started = accept & first
        m.d.sync += pending.eq(pending + started - row_taken)
        with m.If(accept):
            m.d.sync += [wp.eq(wp + 1), in_row.eq(~last), count.eq(Mux(last, 0, count + 1))]

        # Stage 1: x * log2(e) (the multiplier's output register).
        tags = _tag_layout(sm)
        s1 = Signal(tags)
        prod1 = Signal(signed(sm.input_bits + fm.log2e.bit_length() + 1))
        m.d.sync += [s1.valid.eq(accept), s1.first.eq(first), s1.last.eq(last),
                     s1.addr.eq(wp), s1.length.eq(count + 1),
                     prod1.eq(self.i.payload.logit * fm.log2e)]

        # Stage 2: z = x * log2(e), rounded to EF fraction bits.
        z = prod1
        if sm.input_frac_bits:
            z = (z + (1 << (sm.input_frac_bits - 1))) >> sm.input_frac_bits
        s2 = Signal(tags)
        z2 = Signal(signed(fm.z_bits))
        m.d.sync += [s2.eq(s1), z2.eq(z)]

        # Stage 3: table read at the fraction's top bits (synchronous ROM).
        t_bits, d_bits = table_field_bits(sm)
        word = data.StructLayout({"t": unsigned(t_bits), "d": unsigned(d_bits)})
        m.submodules.exp2 = rom = Memory(
            shape=word, depth=sm.exp_table_entries,
            init=[{"t": int(t), "d": int(d)} for t, d in exp2_table(sm)])
        lookup = rom.read_port()
        frac = z2[:ef]
        m.d.comb += lookup.addr.eq(frac[pos_bits:])
        s3 = Signal(tags)
        fl3 = Signal(signed(fm.fl_bits))
        pos3 = Signal(pos_bits)
        m.d.sync += [s3.eq(s2), fl3.eq(z2[ef:].as_signed()), pos3.eq(frac[:pos_bits])]

        # Stage 4: D * r (the multiplier's output register).
        s4 = Signal(tags)
        prod4 = Signal(d_bits + pos_bits)
        base4 = Signal(t_bits)
        fl4 = Signal(signed(fm.fl_bits))
        m.d.sync += [s4.eq(s3), prod4.eq(lookup.data.d * pos3), base4.eq(lookup.data.t),
                     fl4.eq(fl3)]

        # Stage 5: t = T + round(D * r / 2^P).
        interp = prod4
        if pos_bits:
            interp = (interp + (1 << (pos_bits - 1))) >> pos_bits
        s5 = Signal(tags)
        t5 = Signal(fm.t_bits)
        fl5 = Signal(signed(fm.fl_bits))
        m.d.sync += [s5.eq(s4), t5.eq(base4 + interp), fl5.eq(fl4)]

        # Stage 6: running max; the two shift amounts of the sum update (saturated to the bits
        # that can shift their operand out: a larger shift gives 0 either way); the element
        # into the row buffer. The comparison and both differences are parallel carry chains.
        run_max = Signal(signed(fm.fl_bits))
        grow = Signal()                                 # the element raises the row's max
        up = Signal(signed(fm.fl_bits + 1))
        down = Signal(signed(fm.fl_bits + 2))
        m.d.comb += [grow.eq(s5.first | (fl5 > run_max)), up.eq(fl5 - run_max),
                     down.eq(run_max - fl5 + fm.sum_right)]
        with m.If(s5.valid & grow):
            m.d.sync += run_max.eq(fl5)
        m.d.comb += [write.en.eq(s5.valid), write.addr.eq(s5.addr),
                     write.data.t.eq(t5), write.data.fl.eq(fl5)]
        term_bits = fm.t_bits + fm.sum_left

        def saturate(amount, limit: int):
            """``amount`` (>= 0) in ``ceil_log2(limit + 1)`` bits, all ones if it does not fit."""
            n = ceil_log2(limit + 1)
            return Mux(amount.as_unsigned()[n:].any(), (1 << n) - 1, amount[:n])

        s6 = Signal(tags)
        t6 = Signal(fm.t_bits)
        rescale6 = Signal(ceil_log2(fm.sum_bits + 1))   # shift of the old sum (max grew by it)
        below6 = Signal(ceil_log2(term_bits + 1))       # shift of the new term (it is below max)
        m.d.sync += [s6.eq(s5), t6.eq(t5),
                     rescale6.eq(Mux(grow & ~s5.first, saturate(up, fm.sum_bits), 0)),
                     below6.eq(Mux(grow, fm.sum_right, saturate(down, term_bits)))]

        # Stage 7: run_sum = (run_sum >> rescale) + ((t << L) >> below): one shift-add per cycle.
        run_sum = Signal(fm.sum_bits)
        term = (t6 << fm.sum_left) >> below6
        with m.If(s6.valid):
            m.d.sync += run_sum.eq(Mux(s6.first, 0, run_sum >> rescale6) + term)
        push7 = Signal()
        max7 = Signal(signed(fm.fl_bits))               # run_max is the next element's by stage 8
        length7 = Signal.like(s6.length)
        m.d.sync += [push7.eq(s6.valid & s6.last), max7.eq(run_max), length7.eq(s6.length)]

        # Stage 8: the finished row {max, sum, length} into the row queue, from registers.
        finished = row(rows.w_data)
        m.d.comb += [rows.w_en.eq(push7), finished.max.eq(max7),
                     finished.sum.eq(run_sum), finished.length.eq(length7)]

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
        # late (decoded from the registered signs); ``recip`` appends the last step's.
        candidate = [Signal(fm.sum_bits + 1, name=f"remainder{j}") for j in range(1 << k)]
        short = [Signal(name=f"below_x{j}") for j in range(1, 1 << k)]  # (prev << k) < j * sum
        quotient = Signal(iters * k)                     # all bits shifted in per row: no clear
        hold = Signal(row)                               # the row's max and length
        taken = result.valid & result.ready

        def digit_of(short: list) -> Value:
            """The digit: the largest ``j`` whose compare did not come out short (monotonic)."""
            digit = 0
            for j, below in enumerate(short, 1):
                digit = Mux(below, digit, j)
            return Value.cast(digit)

        head = row(rows.r_data)
        pop = rows.r_rdy & ~busy & (~done | taken)
        m.d.comb += rows.r_en.eq(pop)
        with m.If(taken):
            m.d.sync += done.eq(0)
        with m.If(pop):
            m.d.sync += [busy.eq(1), steps.eq(iters), *(below.eq(1) for below in short),
                         candidate[0].eq(1 << (sm.recip_frac_bits + sm.sum_frac_bits - iters * k)),
                         hold.eq(head)]
            # j * sum as shifted copies added (a constant multiply would go to a slow MULT18)
            m.d.sync += [mult.eq(sum(head.sum << b for b in range(k) if j >> b & 1))
                         for j, mult in enumerate(multiples, 1)]
        with m.Elif(busy):
            # remainder < sum always (it starts below 2^sum_frac_bits <= sum), so the next k
            # quotient bits are the largest digit j with (remainder << k) >= j * sum
            remainder = candidate[0]
            for below, cand in zip(short, candidate[1:]):
                remainder = Mux(below, remainder, cand)
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

        # One stage per hop: 1 the buffer read, 2 its data registered, 3 partial products
        # t * R (R split at the multiplier width) and the shift max - fl, 4 their sum, 5 the
        # shift (only the bits rounding keeps), 6 round, saturate, into the output queue.
        prod_bits = fm.t_bits + fm.recip_bits
        split = min(fm.recip_bits, _MULT_BITS)
        kept = prod_bits - (fm.prob_shift - 1)          # bits of (t * R) >> (drop + shift - 1)
        tags = data.StructLayout({"valid": 1, "last": 1, "max": signed(fm.fl_bits),
                                  "recip": unsigned(fm.recip_bits)})
        s1, s2, s3, s4, s5 = (Signal(tags, name=f"n{j}") for j in range(1, 6))
        # the data registers have no reset (the tags' valid bits do): a reset fans out to
        # thousands of flip-flops, and through their reset inputs it was this block's longest path
        t2, fl2 = Signal(fm.t_bits, reset_less=True), Signal(signed(fm.fl_bits), reset_less=True)
        lo3 = Signal(fm.t_bits + split, reset_less=True)
        hi3 = Signal(fm.t_bits + fm.recip_bits - split, reset_less=True)
        drop3 = Signal(range(prod_bits + 1), reset_less=True)
        prod4, drop4 = Signal(prod_bits, reset_less=True), Signal.like(drop3, reset_less=True)
        top5 = Signal(kept, reset_less=True)
        rounded = (top5 + 1) >> 1
        one = 1 << sm.prob_frac_bits
        drop = (s2.max - fl2).as_unsigned()
        m.d.sync += [
            s1.valid.eq(issue), s1.last.eq(remaining == 1), s1.max.eq(row_max),
            s1.recip.eq(row_recip),
            s2.eq(s1), t2.eq(read.t), fl2.eq(read.fl),
            s3.eq(s2), lo3.eq(t2 * s2.recip[:split]), hi3.eq(t2 * s2.recip[split:]),
            drop3.eq(Mux(drop >= prod_bits, prod_bits, drop)),
            s4.eq(s3), prod4.eq(lo3 + (hi3 << split)), drop4.eq(drop3),
            s5.eq(s4), top5.eq((prod4 >> drop4) >> (fm.prob_shift - 1)),
        ]
        beat = Signal(self.o.payload.shape())
        m.d.comb += [beat.last.eq(s5.last), beat.max.eq(s5.max), beat.recip.eq(s5.recip),
                     beat.prob.eq(Mux(rounded > one, one, rounded)),
                     out.i.valid.eq(s5.valid), out.i.payload.eq(beat)]
