"""The one stream driver / monitor / scoreboard layer every cocotb testbench uses.

It lives in the library because the measurement benches of ``moeaccel validate``
(:mod:`moeaccel.benches`) drive the RTL too; the test benches import it as
``tests.hw.streams`` (a re-export of this module).

Pieces (in the style of cocotbext-axi and forastero):

* :func:`pack` / :func:`unpack`: an ``amaranth.lib.data`` layout's value (dict for
  ``StructLayout``, list for ``ArrayLayout``, int for a plain shape, nested freely) <-> the flat
  ``<prefix>__payload`` vector Amaranth emits (signed fields sign-extended on unpack).
* :class:`StreamSource`: drives ``<prefix>__valid``/``__payload`` of an ``In(stream.Signature)``
  port from a queue, with an optional *idle pattern* (random valid gaps); once valid is up it
  stays up with the payload stable until the DUT takes the beat.
* :class:`StreamSink`: drives ``<prefix>__ready`` of an ``Out(stream.Signature)`` port with a
  *back-pressure pattern* and records every accepted beat with its cycle number.
* :class:`Scoreboard`: expected items (from the golden model) against observed items, in order;
  ``check()`` fails on anything missing, extra or different, so a dropped or duplicated beat is
  always caught.
* Patterns: :func:`always`, :func:`random_pattern`, :func:`bursty`: iterators of bools, one per
  cycle, true = "may transfer this cycle" (valid for a source, ready for a sink).
* :class:`Bench`: clock, reset (also mid-stream), a free-running cycle counter, the design config.
* :func:`latency` / :func:`throughput`: figures from the recorded cycle stamps.

Timing model: the testbench drives its outputs just after a rising edge and samples handshakes at
the falling edge, when everything has settled; a beat is *transferred in cycle n* when valid and
ready are both high in the cycle that ends with rising edge n+1 and reset is low. While reset is
high no beat transfers: sources drop what they hold and everything queued (items queued during
reset are dropped too), sinks record nothing, and ``Bench.reset`` flushes the pending expectations
of its scoreboards, so a test can reset mid-stream and carry on.

Testbench skeleton (copy this shape; ``tests/hw/test_gelu.py`` is a full example)::

    import cocotb
    from hw.gelu import input_layout, output_layout        # the block's own payload layouts
    from tests.hw import runner
    from tests.hw.streams import Bench, bursty, random_pattern

    @cocotb.test()
    async def random_gaps(dut):
        tb = Bench(dut)                                     # clock on clk, cycle counter, rst
        ge = tb.config().hardware.gelu                      # the config in MOEACCEL_CONFIG
        src = tb.source("i", input_layout(ge), idle=random_pattern(0.7, seed=1))
        snk = tb.sink("o", output_layout(ge), backpressure=bursty(seed=2, max_stall=20))
        sb = tb.scoreboard("o", snk)                        # observes every beat of snk
        src.on_accept(lambda beat: sb.expect(model(ge, beat)))  # golden model per accepted beat
        await tb.reset()
        await src.send(make_beats(ge, 1000))                # returns once all are accepted
        await snk.wait_for(1000)                            # fails on a stall, not a slow DUT
        sb.check()                                          # nothing lost, duplicated or wrong

    def test_gelu(hw_config):                               # pytest entry point (--hw-config)
        runner.run("gelu", hw_config, __name__)
"""

from __future__ import annotations

import itertools
import os
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cocotb
from amaranth.hdl import Shape, ShapeCastable
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

Pattern = Iterator[bool]

#: Default hang detector: cycles without any progress after which a wait fails.
STALL_CYCLES = 20_000
Layout = data.Layout | ShapeCastable | Shape | int


# --------------------------------------------------------------------------------------------
# Payload packing
# --------------------------------------------------------------------------------------------
def width(layout: Layout) -> int:
    """Width in bits of the payload vector of ``layout``."""
    if isinstance(layout, data.Layout):
        return layout.size
    return Shape.cast(layout).width


def pack(layout: Layout, value: Any) -> int:
    """The unsigned bit vector Amaranth uses for ``value`` of ``layout``.

    ``value`` is a dict (``StructLayout``; every field required), a sequence (``ArrayLayout``;
    exactly ``length`` elements) or an int (plain shapes), nested as the layout is. NumPy
    integers and arrays are accepted. Raises ``ValueError`` if a field is missing, extra or does
    not fit its shape (no silent wrap: that would hide testbench bugs).
    """
    return _pack(layout, value, "payload")


def _pack(layout: Layout, value: Any, where: str) -> int:
    if isinstance(layout, data.StructLayout):
        if not hasattr(value, "keys"):
            raise ValueError(f"{where}: expected a dict for {layout!r}, got {value!r}")
        names = {name for name, _ in layout}
        unknown = set(value.keys()) - names
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} for {layout!r}")
        bits = 0
        for name, field in layout:
            if name not in value:
                raise ValueError(f"{where}: missing field {name!r}")
            bits |= _pack(field.shape, value[name], f"{where}.{name}") << field.offset
        return bits
    if isinstance(layout, data.ArrayLayout):
        if len(value) != layout.length:
            raise ValueError(f"{where}: expected {layout.length} elements, got {len(value)}")
        bits = 0
        for index, field in layout:
            bits |= _pack(field.shape, value[index], f"{where}[{index}]") << field.offset
        return bits
    if isinstance(layout, data.Layout):
        raise TypeError(f"{where}: layout {layout!r} is not supported (struct, array or shape)")
    shape = Shape.cast(layout)
    number = int(value)
    if shape.signed:
        low, high = -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    else:
        low, high = 0, (1 << shape.width) - 1
    if not low <= number <= high:
        raise ValueError(f"{where}: {number} does not fit {shape!r} [{low}, {high}]")
    return number & ((1 << shape.width) - 1)


def unpack(layout: Layout, bits: int) -> Any:
    """The inverse of :func:`pack`: dicts, lists and (sign-extended) ints from a bit vector."""
    if isinstance(layout, data.StructLayout):
        return {name: unpack(field.shape, bits >> field.offset) for name, field in layout}
    if isinstance(layout, data.ArrayLayout):
        return [unpack(field.shape, bits >> field.offset) for _, field in layout]
    if isinstance(layout, data.Layout):
        raise TypeError(f"layout {layout!r} is not supported (struct, array or shape)")
    shape = Shape.cast(layout)
    number = bits & ((1 << shape.width) - 1)
    if shape.signed and shape.width and number >> (shape.width - 1):
        number -= 1 << shape.width
    return number


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays and tuples turned into ints and lists (for ``==``)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------
# Patterns: one bool per cycle, True = may transfer
# --------------------------------------------------------------------------------------------
def always() -> Pattern:
    """Valid (or ready) every cycle: full rate."""
    return itertools.repeat(True)


def random_pattern(p: float, seed: int) -> Pattern:
    """True with probability ``p`` each cycle, independently (reproducible from ``seed``)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"random_pattern: p must be in (0, 1], got {p}")
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


def bursty(seed: int, max_stall: int = 32, max_burst: int = 32) -> Pattern:
    """Bursts of 1..``max_burst`` true cycles, then stalls of 1..``max_stall`` false cycles."""
    rng = random.Random(seed)
    while True:
        yield from itertools.repeat(True, rng.randint(1, max_burst))
        yield from itertools.repeat(False, rng.randint(1, max_stall))


# --------------------------------------------------------------------------------------------
# Cycle counting and signals
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Beat:
    """One transferred stream beat: the cycle it transferred in and its (unpacked) item."""

    cycle: int
    item: Any


class CycleCounter:
    """Counts rising edges of ``clk`` from its creation; read it after a falling edge."""

    def __init__(self, clk):
        self.clk = clk
        self.now = 0
        self._task = cocotb.start_soon(self._count())

    async def _count(self) -> None:
        while True:
            await RisingEdge(self.clk)
            self.now += 1


def _read(handle) -> int:
    value = handle.value
    to_unsigned = getattr(value, "to_unsigned", None)
    return to_unsigned() if to_unsigned is not None else int(value)


def _port(dut, prefix: str, member: str):
    name = f"{prefix}__{member}" if prefix else member
    if not hasattr(dut, name):
        return None
    return getattr(dut, name)


class _Endpoint:
    """Shared parts of a source and a sink: ports, clock, reset, counter and beat log."""

    def __init__(self, dut, prefix: str, layout: Layout, clk, reset=None,
                 counter: CycleCounter | None = None):
        self.dut = dut
        self.prefix = prefix
        self.layout = layout
        self.clk = clk
        self.reset = reset
        self.counter = counter if counter is not None else CycleCounter(clk)
        self.valid = _port(dut, prefix, "valid")
        self.ready = _port(dut, prefix, "ready")
        self.payload = _port(dut, prefix, "payload")
        if self.valid is None and self.ready is None:
            raise AttributeError(f"{dut._name} has no stream {prefix!r} "
                                 f"(no {prefix}__valid or {prefix}__ready port)")
        if not width(layout):
            self.payload = None          # Amaranth emits a zero-width payload as "[-1:0]"
        elif self.payload is None:
            raise AttributeError(f"{dut._name} has no port {prefix}__payload")
        elif len(self.payload) != width(layout):
            raise ValueError(f"{prefix}__payload is {len(self.payload)} bits but the layout "
                             f"{layout!r} is {width(layout)} bits")
        #: every transferred beat, in order
        self.beats: list[Beat] = []
        self._callbacks: list[Callable[[Any], None]] = []
        self._beat_callbacks: list[Callable[[Beat], None]] = []
        self._scoreboards: list[Scoreboard] = []     # attached; summarised when a wait stalls

    def _in_reset(self) -> bool:
        return self.reset is not None and bool(_read(self.reset))

    def _record(self, item: Any) -> None:
        beat = Beat(self.counter.now, item)
        self.beats.append(beat)
        for callback in self._beat_callbacks:
            callback(beat)
        for callback in self._callbacks:
            callback(item)

    def on_beat(self, callback: Callable[[Beat], None]) -> None:
        """Call ``callback(beat)`` for every transferred beat (with its cycle stamp)."""
        self._beat_callbacks.append(callback)

    def _scoreboard_report(self) -> str:
        return "".join("\n" + board.report() for board in self._scoreboards)

    @property
    def count(self) -> int:
        """Beats transferred so far."""
        return len(self.beats)

    async def wait_for(self, count: int, timeout_cycles: int = STALL_CYCLES) -> None:
        """Wait until ``count`` beats in total have transferred.

        Fails if ``timeout_cycles`` pass without a new beat (a hang, not a slow block).
        """
        last_count, last_cycle = len(self.beats), self.counter.now
        while len(self.beats) < count:
            if len(self.beats) != last_count:
                last_count, last_cycle = len(self.beats), self.counter.now
            elif self.counter.now - last_cycle > timeout_cycles:
                raise AssertionError(f"{self.prefix}: stalled at {len(self.beats)} of {count} "
                                     f"beats: none for {timeout_cycles} cycles"
                                     + self._scoreboard_report())
            await RisingEdge(self.clk)


# --------------------------------------------------------------------------------------------
# Driver and monitor
# --------------------------------------------------------------------------------------------
class StreamSource(_Endpoint):
    """Drives an ``In(stream.Signature(layout))`` port of ``dut`` named ``prefix``.

    Parameters
    ----------
    dut, prefix : the cocotb DUT handle and the stream's port prefix (``"i"`` for ``i__valid``).
    layout : the payload layout (the same object the hardware uses).
    clk : the clock handle.
    idle : pattern consulted before offering each beat; a false value keeps valid low for that
        cycle (default :func:`always`). Once valid is high it stays high, payload stable, until
        the DUT is ready (AXI-Stream rules).
    reset : the reset handle (active high); while high, held and queued items are dropped.
    counter : the :class:`CycleCounter` used to stamp beats (a :class:`Bench` passes its own).

    ``beats`` lists every accepted beat with its cycle; ``on_accept(fn)`` subscribes a reference
    model to the accepted items; ``dropped`` counts items dropped by reset.
    """

    def __init__(self, dut, prefix: str, layout: Layout, clk, idle: Iterable[bool] | None = None,
                 *, reset=None, counter: CycleCounter | None = None):
        super().__init__(dut, prefix, layout, clk, reset, counter)
        if self.valid is None:
            raise AttributeError(f"{prefix}: a source needs a {prefix}__valid port")
        self.idle = iter(idle) if idle is not None else always()
        self._queue: deque[tuple[Any, int]] = deque()
        self._current: tuple[Any, int] | None = None
        self.dropped = 0
        self.valid.value = 0
        self._task = cocotb.start_soon(self._drive())

    def append(self, item: Any) -> None:
        """Queue ``item`` (packed now, so a bad value fails here, not in the simulation)."""
        self._queue.append((item, pack(self.layout, item)))

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.append(item)

    def on_accept(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(item)`` for every item the DUT accepts (reference-model hook)."""
        self._callbacks.append(callback)

    @property
    def busy(self) -> bool:
        """True while an item is queued or offered and not yet accepted."""
        return self._current is not None or bool(self._queue)

    async def send(self, items: Iterable[Any], timeout_cycles: int = STALL_CYCLES) -> None:
        """Queue ``items`` and wait until all are accepted (or dropped by a reset).

        Fails if the DUT accepts nothing for ``timeout_cycles`` cycles.
        """
        self.extend(items)
        await self.wait_idle(timeout_cycles)

    async def wait_idle(self, timeout_cycles: int = STALL_CYCLES) -> None:
        """Wait until nothing is queued or offered; fail on a ``timeout_cycles`` stall."""
        last_count, last_cycle = len(self.beats), self.counter.now
        while self.busy:
            if len(self.beats) != last_count or self._current is None:
                last_count, last_cycle = len(self.beats), self.counter.now
            elif self.counter.now - last_cycle > timeout_cycles:
                raise AssertionError(f"{self.prefix}: the DUT accepted nothing for "
                                     f"{timeout_cycles} cycles ({len(self._queue) + 1} items "
                                     f"still to send)")
            await RisingEdge(self.clk)

    def flush(self) -> int:
        """Drop the offered and queued items; return how many were dropped."""
        dropped = len(self._queue) + (self._current is not None)
        self._queue.clear()
        self._current = None
        self.dropped += dropped
        return dropped

    async def _drive(self) -> None:
        while True:
            await RisingEdge(self.clk)
            if self._current is None and self._queue and next(self.idle):
                self._current = self._queue.popleft()
                if self.payload is not None:
                    self.payload.value = self._current[1]
            self.valid.value = int(self._current is not None)
            await FallingEdge(self.clk)
            if self._in_reset():
                self.flush()
                self.valid.value = 0
            elif self._current is not None and (self.ready is None or _read(self.ready)):
                item, self._current = self._current[0], None
                self._record(item)


class StreamSink(_Endpoint):
    """Receives an ``Out(stream.Signature(layout))`` port of ``dut`` named ``prefix``.

    ``backpressure`` is a pattern giving ready for each cycle (default :func:`always`). Every
    transferred beat is unpacked with ``layout`` and appended to ``beats`` as
    ``Beat(cycle, item)``; ``items`` lists the items alone; ``on_beat(fn)`` subscribes a
    scoreboard. ``await recv()`` returns the next not-yet-received item.
    """

    def __init__(self, dut, prefix: str, layout: Layout, clk,
                 backpressure: Iterable[bool] | None = None, *, reset=None,
                 counter: CycleCounter | None = None):
        super().__init__(dut, prefix, layout, clk, reset, counter)
        if self.valid is None:
            raise AttributeError(f"{prefix}: a sink needs a {prefix}__valid port")
        self.backpressure = iter(backpressure) if backpressure is not None else always()
        self._ready = 0
        self._next_recv = 0
        if self.ready is not None:
            self.ready.value = 0
        self._task = cocotb.start_soon(self._monitor())

    @property
    def items(self) -> list[Any]:
        return [beat.item for beat in self.beats]

    async def recv(self, timeout_cycles: int = STALL_CYCLES) -> Any:
        """The next item in order (waits for it)."""
        await self.wait_for(self._next_recv + 1, timeout_cycles)
        self._next_recv += 1
        return self.beats[self._next_recv - 1].item

    async def _monitor(self) -> None:
        while True:
            await RisingEdge(self.clk)
            self._ready = int(bool(next(self.backpressure)))
            if self.ready is not None:
                self.ready.value = self._ready
            await FallingEdge(self.clk)
            if self._in_reset():
                continue
            if (self._ready or self.ready is None) and _read(self.valid):
                bits = _read(self.payload) if self.payload is not None else 0
                self._record(unpack(self.layout, bits))


# --------------------------------------------------------------------------------------------
# Scoreboard
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mismatch:
    index: int       # position of the observed item in the observed stream (from 0)
    expected: Any
    got: Any
    hint: str = ""


class Scoreboard:
    """Expected items (reference model) against observed items (monitor), in order.

    ``expect(item)`` and ``observe(item)`` may come in any order within a cycle; each observed
    item is compared with the oldest pending expected one (``compare(expected, got)``, default
    equality after :func:`plain`). Counts ``expected``, ``received``, ``matched`` and
    ``flushed`` (expectations dropped by a reset). :meth:`check` raises ``AssertionError``
    unless every expected item was observed, in order, once, and nothing else was.
    """

    def __init__(self, name: str = "scoreboard",
                 compare: Callable[[Any, Any], bool] | None = None, log=None,
                 max_report: int = 5):
        self.name = name
        self.compare = compare or (lambda expected, got: plain(expected) == plain(got))
        self.log = log
        self.max_report = max_report
        self.expected = 0
        self.received = 0
        self.matched = 0
        self.flushed = 0
        self.mismatches: list[Mismatch] = []
        self.extra: list[tuple[int, Any]] = []     # observed with nothing expected: (index, item)
        self._pending: deque[Any] = deque()         # expected, not yet observed
        self._unmatched: deque[tuple[int, Any]] = deque()   # observed, not yet expected
        self._last_got: Any = None

    def expect(self, item: Any) -> None:
        self.expected += 1
        self._pending.append(item)
        self._match()

    def expect_all(self, items: Iterable[Any]) -> None:
        for item in items:
            self.expect(item)

    def observe(self, item: Any) -> None:
        self._unmatched.append((self.received, item))
        self.received += 1
        self._match()

    def attach(self, endpoint: _Endpoint) -> Scoreboard:
        """Observe every beat ``endpoint`` (usually a :class:`StreamSink`) transfers."""
        endpoint.on_beat(lambda beat: self.observe(beat.item))
        endpoint._scoreboards.append(self)
        return self

    def flush(self) -> int:
        """Forget pending expectations (the DUT was reset); return how many were dropped.

        Observed items still waiting for an expectation become ``extra`` (errors).
        """
        dropped = len(self._pending)
        self._pending.clear()
        self.flushed += dropped
        self.extra.extend(self._unmatched)
        self._unmatched.clear()
        return dropped

    @property
    def pending(self) -> int:
        """Expected items not observed (yet)."""
        return len(self._pending)

    def _match(self) -> None:
        while self._pending and self._unmatched:
            expected = self._pending.popleft()
            index, got = self._unmatched.popleft()
            if self.compare(expected, got):
                self.matched += 1
            else:
                hint = ""
                if index and self.compare(self._last_got, got):
                    hint = "same as the previous item: duplicated?"
                elif any(self.compare(later, got) for later in itertools.islice(self._pending, 8)):
                    hint = "equals a later expected item: items dropped?"
                self.mismatches.append(Mismatch(index, plain(expected), plain(got), hint))
                if self.log is not None and len(self.mismatches) <= self.max_report:
                    self.log.error("%s: item %d: expected %r, got %r %s", self.name, index,
                                   plain(expected), plain(got), hint)
            self._last_got = got

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.extra or self._unmatched or self._pending)

    def summary(self) -> str:
        return (f"{self.name}: expected {self.expected}, received {self.received}, "
                f"matched {self.matched}, mismatched {len(self.mismatches)}, "
                f"missing {len(self._pending)}, extra {len(self.extra) + len(self._unmatched)}, "
                f"flushed by reset {self.flushed}")

    def check(self) -> None:
        """Raise ``AssertionError`` describing every kind of discrepancy, if there is one."""
        if not self.ok:
            raise AssertionError(self.report())

    def report(self) -> str:
        """The summary line, then the first mismatches, missing and extra items."""
        lines = [self.summary()]
        for m in self.mismatches[: self.max_report]:
            lines.append(f"  item {m.index}: expected {m.expected!r}, got {m.got!r}"
                         + (f"  ({m.hint})" if m.hint else ""))
        if self._pending:
            lines.append(f"  missing: {len(self._pending)} expected item(s) never observed, "
                         f"the first {plain(self._pending[0])!r}")
        for index, item in [*self.extra, *self._unmatched][: self.max_report]:
            lines.append(f"  extra item {index}: {plain(item)!r} (nothing was expected)")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Figures from cycle stamps
# --------------------------------------------------------------------------------------------
def latency(inputs: Sequence[Beat], outputs: Sequence[Beat]) -> int:
    """Cycles from the first input beat transferred to the first output beat transferred."""
    if not inputs or not outputs:
        raise ValueError("latency needs at least one input and one output beat")
    return outputs[0].cycle - inputs[0].cycle


def throughput(beats: Sequence[Beat], skip: int = 0) -> float:
    """Beats per cycle in steady state: over ``beats[skip:]``, (n - 1) / (last - first cycle)."""
    window = beats[skip:]
    if len(window) < 2:
        raise ValueError("throughput needs at least two beats after the skipped ones")
    return (len(window) - 1) / (window[-1].cycle - window[0].cycle)


# --------------------------------------------------------------------------------------------
# Bench
# --------------------------------------------------------------------------------------------
class Bench:
    """Clock, reset, cycle counter and config for one cocotb test; makes sources and sinks.

    ``Bench(dut)`` starts a ``period_ns`` clock on ``dut.clk`` and a :class:`CycleCounter`
    (``bench.cycle``). Sources, sinks and scoreboards made through it share the counter, watch
    ``dut.rst`` and are flushed by :meth:`reset`.
    """

    def __init__(self, dut, clk: str = "clk", rst: str = "rst", period_ns: int = 10):
        self.dut = dut
        self.log = dut._log
        self.clk = getattr(dut, clk)
        self.rst = getattr(dut, rst) if hasattr(dut, rst) else None
        if self.rst is not None:
            self.rst.value = 0
        self.clock = Clock(self.clk, period_ns, unit="ns")
        self.clock.start(start_high=False)
        self.counter = CycleCounter(self.clk)
        self.sources: list[StreamSource] = []
        self.sinks: list[StreamSink] = []
        self.scoreboards: list[Scoreboard] = []
        self._reset_hooks: list[Callable[[], None]] = []
        self._cfg = None

    @property
    def cycle(self) -> int:
        """Rising edges since the bench started."""
        return self.counter.now

    def source(self, prefix: str, layout: Layout, idle: Iterable[bool] | None = None
               ) -> StreamSource:
        src = StreamSource(self.dut, prefix, layout, self.clk, idle, reset=self.rst,
                           counter=self.counter)
        self.sources.append(src)
        return src

    def sink(self, prefix: str, layout: Layout, backpressure: Iterable[bool] | None = None
             ) -> StreamSink:
        snk = StreamSink(self.dut, prefix, layout, self.clk, backpressure, reset=self.rst,
                         counter=self.counter)
        self.sinks.append(snk)
        return snk

    def scoreboard(self, name: str, sink: StreamSink | None = None,
                   compare: Callable[[Any, Any], bool] | None = None) -> Scoreboard:
        """A scoreboard flushed on reset, observing ``sink`` if given."""
        board = Scoreboard(name, compare=compare, log=self.log)
        if sink is not None:
            board.attach(sink)
        self.scoreboards.append(board)
        return board

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` when :meth:`reset` asserts reset (e.g. to clear a model's state)."""
        self._reset_hooks.append(hook)

    async def reset(self, cycles: int = 2) -> None:
        """Hold reset for ``cycles`` cycles; flush scoreboards; return after it is released."""
        if self.rst is None:
            raise AttributeError("the DUT has no reset port")
        await RisingEdge(self.clk)
        self.rst.value = 1
        for board in self.scoreboards:
            board.flush()
        for hook in self._reset_hooks:
            hook()
        await ClockCycles(self.clk, cycles)
        self.rst.value = 0

    async def cycles(self, count: int) -> None:
        """Wait ``count`` rising edges."""
        await ClockCycles(self.clk, count)

    def config(self):
        """The design config named by ``MOEACCEL_CONFIG`` (set by :func:`tests.hw.runner.run`)."""
        if self._cfg is None:
            self._cfg = config_from_env()
        return self._cfg


def config_from_env():
    """``moeaccel.config.load($MOEACCEL_CONFIG)``."""
    from moeaccel import config

    name = os.environ.get("MOEACCEL_CONFIG")
    if not name:
        raise RuntimeError("MOEACCEL_CONFIG is not set: run this bench through "
                           "moeaccel.rtlsim (tests.hw.runner)")
    return config.load(name)
