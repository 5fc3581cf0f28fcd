"""A UART (8 data bits, no parity, 1 stop bit) with byte streams on the fabric side.

``divisor`` is the number of clock cycles per bit, ``round(clock_hz / baud)``; see
:func:`divisor`. Both directions are independent components so a board top can use one
without the other.
"""


from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


def divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit; raises ``ValueError`` if the baud rate is off by more than 2%."""
    div = round(clock_hz / baud)
    if div < 4 or abs(clock_hz / div - baud) / baud > 0.02:
        raise ValueError(f"{baud} baud cannot be made from a {clock_hz / 1e6:g} MHz clock")
    return div


class UartTx(wiring.Component):
    """Serialises bytes: start bit (0), 8 data bits LSB first, stop bit (1).

    Members
    -------
    data : In(stream.Signature(8))
        Bytes to send; one is accepted when the line is idle.
    tx : Out(1)
        The serial line (idles high).

    Timing: ``10 * divisor`` cycles per byte; a byte offered while idle is accepted at once.
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10)  # stop, data[7:0], start: shifted out LSB first
        bits = Signal(range(11))
        timer = Signal(range(self.divisor))
        # registered look-aheads of timer == 0 and timer == 1, so no counter compare sits in
        # front of the shift register's enable
        at_zero, at_one = Signal(), Signal()

        # ``ready`` is a register (equal to ``bits == 0``): the host bridge loads its response
        # register and read-out word on it, so it should start at a flip-flop
        idle = Signal(init=1)
        m.d.comb += self.data.ready.eq(idle)
        with m.If(idle):
            with m.If(self.data.valid):
                m.d.sync += [shift.eq((1 << 9) | (self.data.payload << 1)), bits.eq(10),
                             timer.eq(0), at_zero.eq(1), at_one.eq(0), idle.eq(0)]
        with m.Else():
            # A bit period is the cycle with timer == 0 (which drives the next bit) plus
            # divisor - 1 countdown cycles; the last of them retires the bit.
            with m.If(at_zero):
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1),
                             timer.eq(self.divisor - 1), at_zero.eq(0),
                             at_one.eq(self.divisor == 2)]
            with m.Else():
                m.d.sync += [timer.eq(timer - 1), at_zero.eq(at_one), at_one.eq(timer == 2)]
                with m.If(at_one):
                    m.d.sync += bits.eq(bits - 1)
                    with m.If(bits == 1):
                        m.d.sync += idle.eq(1)
        return m


class UartRx(wiring.Component):
    """Deserialises bytes, sampling each bit in its middle.

    Members
    -------
    rx : In(1)
        The serial line (synchronised inside with two flip-flops).
    data : Out(stream.Signature(8))
        Received bytes. A byte not taken before the next one completes is lost and sets
        ``overrun``.
    overrun : Out(1)
        Sticky: a byte was lost.
    framing_error : Out(1)
        Sticky: a stop bit read as 0 (the byte is dropped).
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    overrun: Out(1)
    framing_error: Out(1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bits = Signal(range(10))  # 0: idle; 9..2: data bits to read; 1: stop bit
        shift = Signal(8)
        # timer == 0, registered (a look-ahead of the count), so the bit decisions start at a
        # flip-flop rather than at a compare of the whole timer
        at_zero = Signal(init=1)

        with m.If(self.data.valid & self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.If(bits == 0):
            with m.If(~line):  # start bit edge: first sample in the middle of data bit 0
                m.d.sync += [bits.eq(9), timer.eq(self.divisor * 3 // 2 - 1),
                             at_zero.eq(self.divisor * 3 // 2 - 1 == 0)]
        with m.Elif(~at_zero):
            m.d.sync += [timer.eq(timer - 1), at_zero.eq(timer == 1)]
        with m.Else():
            m.d.sync += [timer.eq(self.divisor - 1), at_zero.eq(self.divisor - 1 == 0),
                         bits.eq(bits - 1)]
            with m.If(bits == 1):
                with m.If(line):
                    m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                    with m.If(self.data.valid & ~self.data.ready):
                        m.d.sync += self.overrun.eq(1)
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
            with m.Else():
                m.d.sync += shift.eq((line << 7) | (shift >> 1))
        return m
