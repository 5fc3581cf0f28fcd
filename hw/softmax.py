"""The single-pass softmax unit: rows of logits in, probabilities and ``{max, 1/sum}`` out.

Arithmetic is exactly :mod:`golden.softmax` (base 2, integer running max, shift-rescaled sum, one
reciprocal per row); widths come from :class:`golden.softmax.Formats`. Timing is exactly
:mod:`sim.timing.softmax`; ``tests/hw/test_softmax.py`` checks both on Verilator.

Structure (three row stages joined by queues, so consecutive rows overlap)::

    i ──> accumulate ──{t, fl}──> row buffer (memory) ──> normalise ──> o
              │                                              ^
              └──{max, sum, n}──> row queue ──> reciprocal ──┘ {max, 1/sum, n}

* **accumulate** (4 stages, never stalls once a beat is accepted): ``z = x * log2(e)``;
  table read ``(T, D)`` at the fraction's top bits; ``t = T + D * r`` (interpolation); running
  max/sum update, ``{t, fl}`` written to the row buffer. At the row's last element the row's
  ``{max, sum, length}`` enters a 2-deep row queue. A new row is accepted only while fewer than
  :data:`sim.timing.softmax.ROW_CREDITS` rows wait for the divider.
* **reciprocal**: a restoring divider, ``divider_bits_per_cycle`` quotient bits per cycle,
  computes ``floor(2^(RF+SF) / sum)`` once per row.
* **normalise** (3 stages, stalls as a whole on output back-pressure): reads the row's
  ``{t, fl}`` back, ``p = round((t * R) >> (max - fl))``, saturated to 1.0.

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
``n - 1 + latency`` cycles after its first logit was accepted, ``latency = 4 + ceil((RF+1) /
divider_bits_per_cycle) + 2 + 3`` (22 with the default config). Rows stream back to back at
``max(n, divider_interval)`` cycles per row (``divider_interval`` = 14 by default).

Resources (yosys ``synth_ecp5``, m3vit-tiny): 871 LUT4 + 131 CCU2C, 605 FF, 4 MULT18X18D
(``x * log2 e``, ``D * r``, and ``t * R`` as two), 2 DP16KD (the 1024 x 26 row buffer); the
64-word table ROM is mapped to LUTs.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.softmax import Formats, exp2_table, table_field_bits
from moeaccel.config import DesignConfig, SoftmaxConfig
from moeaccel.errors import ConfigError
from sim.timing import softmax as timing


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
        m.submodules.buffer = buffer = Memory(shape=_element_layout(sm), depth=buffer_depth(sm),
                                              init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        result = stream.Signature(_result_layout(sm)).create(path=("reciprocal",))
        row_taken = self._reciprocal(m, rows, row, result)
        self._accumulate(m, fm, rows, row, write, row_taken)
        self._normalise(m, fm, read, result)
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

        # Stage 1: z = x * log2(e), rounded to EF fraction bits.
        z_shape = signed(fm.z_bits)
        prod = self.i.payload.logit * fm.log2e
        if sm.input_frac_bits:
            prod = (prod + (1 << (sm.input_frac_bits - 1))) >> sm.input_frac_bits
        tags = _tag_layout(sm)
        s1 = Signal(tags)
        z1 = Signal(z_shape)
        m.d.sync += [s1.valid.eq(accept), s1.first.eq(first), s1.last.eq(last),
                     s1.addr.eq(wp), s1.length.eq(count + 1), z1.eq(prod)]

        # Stage 2: table read at the fraction's top bits (synchronous ROM).
        t_bits, d_bits = table_field_bits(sm)
        word = data.StructLayout({"t": unsigned(t_bits), "d": unsigned(d_bits)})
        m.submodules.exp2 = rom = Memory(
            shape=word, depth=sm.exp_table_entries,
            init=[{"t": int(t), "d": int(d)} for t, d in exp2_table(sm)])
        lookup = rom.read_port()
        frac = z1[:ef]
        m.d.comb += lookup.addr.eq(frac[pos_bits:])
        s2 = Signal(tags)
        fl2 = Signal(signed(fm.fl_bits))
        pos2 = Signal(pos_bits)
        m.d.sync += [s2.eq(s1), fl2.eq(z1[ef:].as_signed()), pos2.eq(frac[:pos_bits])]

        # Stage 3: t = T + round(D * r / 2^P).
        interp = lookup.data.d * pos2
        if pos_bits:
            interp = (interp + (1 << (pos_bits - 1))) >> pos_bits
        s3 = Signal(tags)
        t3 = Signal(fm.t_bits)
        fl3 = Signal(signed(fm.fl_bits))
        m.d.sync += [s3.eq(s2), t3.eq(lookup.data.t + interp), fl3.eq(fl2)]

        # Stage 4: running max; the two shift amounts of the sum update (clamped to the width
        # they shift: a larger shift gives 0 either way); the element into the row buffer.
        run_max = Signal(signed(fm.fl_bits))
        diff = Signal(signed(fm.fl_bits + 1))           # fl - max so far (0 for a row's first)
        m.d.comb += diff.eq(Mux(s3.first, 0, fl3 - run_max))
        grow = diff > 0
        with m.If(s3.valid & (s3.first | grow)):
            m.d.sync += run_max.eq(fl3)
        m.d.comb += [write.en.eq(s3.valid), write.addr.eq(s3.addr),
                     write.data.t.eq(t3), write.data.fl.eq(fl3)]
        term_bits = fm.t_bits + fm.sum_left

        def clamp(amount, limit: int):
            return Mux(amount >= limit, limit, amount)[:ceil_log2(limit + 1)]

        s4 = Signal(tags)
        t4 = Signal(fm.t_bits)
        rescale4 = Signal(range(fm.sum_bits + 1))       # shift of the old sum (max grew by it)
        below4 = Signal(range(term_bits + 1))           # shift of the new term (it is below max)
        m.d.sync += [s4.eq(s3), t4.eq(t3),
                     rescale4.eq(clamp(Mux(grow, diff, 0).as_unsigned(), fm.sum_bits)),
                     below4.eq(clamp(Mux(grow, 0, -diff).as_unsigned() + fm.sum_right,
                                     term_bits))]

        # Stage 5: run_sum = (run_sum >> rescale) + ((t << L) >> below): one shift-add per cycle.
        run_sum = Signal(fm.sum_bits)
        term = (t4 << fm.sum_left) >> below4
        with m.If(s4.valid):
            m.d.sync += run_sum.eq(Mux(s4.first, 0, run_sum >> rescale4) + term)
        push5 = Signal()
        max5 = Signal(signed(fm.fl_bits))               # run_max is the next element's by stage 6
        length5 = Signal.like(s4.length)
        m.d.sync += [push5.eq(s4.valid & s4.last), max5.eq(run_max), length5.eq(s4.length)]

        # Stage 6: the finished row {max, sum, length} into the row queue, from registers.
        finished = row(rows.w_data)
        m.d.comb += [rows.w_en.eq(push5), finished.max.eq(max5),
                     finished.sum.eq(run_sum), finished.length.eq(length5)]

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
        divisor = Signal(fm.sum_bits)
        remainder = Signal(fm.sum_bits + 1)
        quotient = Signal(iters * k)
        hold = Signal(row)                               # the row's max and length
        taken = result.valid & result.ready

        head = row(rows.r_data)
        pop = rows.r_rdy & ~busy & (~done | taken)
        m.d.comb += rows.r_en.eq(pop)
        with m.If(taken):
            m.d.sync += done.eq(0)
        with m.If(pop):
            m.d.sync += [busy.eq(1), steps.eq(iters), divisor.eq(head.sum),
                         remainder.eq(1 << (sm.recip_frac_bits + sm.sum_frac_bits - iters * k)),
                         quotient.eq(0), hold.eq(head)]
        with m.Elif(busy):
            rem, quo = remainder, quotient
            for _ in range(k):
                shifted = rem << 1
                fits = shifted >= divisor
                rem = Mux(fits, shifted - divisor, shifted)[:len(remainder)]
                quo = ((quo << 1) | fits)[:len(quotient)]
            m.d.sync += [remainder.eq(rem), quotient.eq(quo), steps.eq(steps - 1)]
            with m.If(steps == 1):
                m.d.sync += [busy.eq(0), done.eq(1)]
        m.d.comb += [result.payload.max.eq(hold.max), result.payload.length.eq(hold.length),
                     result.payload.recip.eq(quotient[:fm.recip_bits])]
        return pop

    # ------------------------------------------------------------------------------ normalise
    def _normalise(self, m: Module, fm: Formats, read, result: stream.Interface) -> None:
        sm = self._sm
        active = Signal()
        remaining = Signal(range(sm.max_row_length + 1))
        rp = Signal(range(buffer_depth(sm)))
        row_max = Signal(signed(fm.fl_bits))
        row_recip = Signal(fm.recip_bits)

        advance = ~self.o.valid | self.o.ready
        issue = active & advance
        final = issue & (remaining == 1)
        take = result.valid & result.ready
        m.d.comb += [result.ready.eq(~active | final), read.addr.eq(rp), read.en.eq(advance)]
        with m.If(issue):
            m.d.sync += [rp.eq(rp + 1), remaining.eq(remaining - 1)]
            with m.If(final):
                m.d.sync += active.eq(0)
        with m.If(take):
            m.d.sync += [active.eq(1), remaining.eq(result.payload.length),
                         row_max.eq(result.payload.max), row_recip.eq(result.payload.recip)]

        # Stage 1 tags (aligned with the buffer's read data), stage 2 product, stage 3 output.
        v1, last1 = Signal(), Signal()
        max1, recip1 = Signal(signed(fm.fl_bits)), Signal(fm.recip_bits)
        v2, last2 = Signal(), Signal()
        max2, recip2 = Signal(signed(fm.fl_bits)), Signal(fm.recip_bits)
        prod2 = Signal(fm.t_bits + fm.recip_bits)
        drop2 = Signal(fm.fl_bits + 1)
        rounded = ((prod2 >> drop2) + (1 << (fm.prob_shift - 1))) >> fm.prob_shift
        one = 1 << sm.prob_frac_bits
        with m.If(advance):
            m.d.sync += [
                v1.eq(issue), last1.eq(remaining == 1), max1.eq(row_max), recip1.eq(row_recip),
                v2.eq(v1), last2.eq(last1), max2.eq(max1), recip2.eq(recip1),
                prod2.eq(read.data.t * recip1), drop2.eq((max1 - read.data.fl).as_unsigned()),
                self.o.valid.eq(v2), self.o.payload.last.eq(last2),
                self.o.payload.max.eq(max2), self.o.payload.recip.eq(recip2),
                self.o.payload.prob.eq(Mux(rounded > one, one, rounded)),
            ]
