"""The host bridge: runs the framed command protocol of :mod:`fpga.host.protocol` over a byte
stream and hosts any number of accelerator blocks behind it.

For every block it hosts, the bridge has one memory per stream member (see
:mod:`hw.host_ports`): the host fills the input memories (WRITE), sets how many words each
stream moves (LENGTH) and STARTs the block; the bridge then streams every input memory into the
block and captures every output stream into its memory, both at one word per cycle under the
block's valid/ready, and counts cycles until the last expected output word. The host polls
STATUS and READs the output memories. Any block with ``amaranth.lib.stream`` ports plugs in
without changes: payload widths come from the port signatures.

Timing: STATUS counts cycles from START (cycle 1 is the input memory's read, cycle 2 loads the
block RAM's output register, which drives the block) up to and including the cycle in which an output word is
accepted: ``first_out`` = 3 + the block's latency for the first word, and ``cycles`` (to the last
word) = 2 + latency + N for a block that takes and gives one word per cycle. Nothing else the
bridge does stalls the block. Requests are parsed at one byte per
cycle, responses leave at one byte per 2 cycles at most (a UART takes one per 10 bit times); the
byte streams are usually a UART (:mod:`hw.uart`), or, in simulation, a test's bytes.
A WRITE word lands in its memory (or register) two cycles after its last byte (registered
address, data and strobe; the next request cannot see the difference); a STATUS reply is a
snapshot of the counters taken when the request executes, so its fields are consistent.
"""


from typing import Mapping

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from fpga.host.protocol import SYNC_REQUEST, SYNC_RESPONSE, VERSION, Op, Status
from hw.block_ram import NO_COLLISION_LOGIC, BlockRam, registered_read
from hw.constant_product import times_constant
from hw.host_ports import WIDE_BITS, Port, PortKind, map_digest, port_map

ARG_BYTES = 5  # the longest fixed request header: READ's port, addr, count


def _stream_memory(m: Module, name: str, width: int, depth: int, lutram: bool):
    """A stream memory: ``(write, read)`` ports of a :class:`~hw.block_ram.BlockRam` with two
    read stages (the second is the DP16KD's output register), or, for a ``lutram`` memory, the
    same two stages on distributed RAM (an asynchronous read and two registers). Nothing but a
    register follows the RAM's read data."""
    if not lutram:
        m.submodules[name] = ram = BlockRam(width=width, depth=depth, read_stages=2)
        return ram.write, ram.read
    # no collision logic: see the callers
    mem = Memory(shape=unsigned(width), depth=depth, init=[],
                 attrs={**NO_COLLISION_LOGIC, "ram_style": "distributed"})
    m.submodules[name] = mem
    write = WritePort.Signature(addr_width=ceil_log2(depth), shape=unsigned(width)).create()
    read = ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(width)).create()
    first = registered_read(m, mem, read.addr, read.en, f"{name}_read1")
    second = Signal(width, name=f"{name}_read2", reset_less=True)
    with m.If(read.en):
        m.d.sync += second.eq(first)
    wp = mem.write_port()
    m.d.comb += [wp.addr.eq(write.addr), wp.data.eq(write.data), wp.en.eq(write.en),
                 read.data.eq(second)]
    return write, read


def _or_all(values, shape=None) -> Value:
    """The bitwise OR of ``values`` (0 if there are none): a one-hot selected value."""
    total = Const(0, shape) if shape is not None else Const(0)
    for v in values:
        total = total | v
    return total


def _split_bits(constant: int) -> tuple[int, int]:
    """``constant`` as two constants of half its set bits each (high bits, low bits) that add up
    to it: a product by each is half the adders of the whole."""
    bits = [i for i in range(constant.bit_length()) if constant >> i & 1]
    low = sum(1 << i for i in bits[:len(bits) // 2])
    return constant - low, low


class HostBridge(wiring.Component):
    """Protocol engine plus per-block input/output memories and sequencers.

    Parameters
    ----------
    blocks : mapping of name -> wiring.Component
        The blocks to host (block number = position); each becomes a submodule.
    depth : int
        Words per stream memory (at most 65536).
    wide_depth : int or None
        Words per stream memory wider than :data:`hw.host_ports.WIDE_BITS` bits; these are
        built from distributed RAM (LUTs) instead of block RAM.
    frame_timeout : int
        Cycles of silence after which a half-received request is dropped.

    Members
    -------
    rx : In(stream.Signature(8))
        Request bytes from the host.
    tx : Out(stream.Signature(8))
        Response bytes to the host.
    busy : Out(1)
        Some block is running.
    """

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))
    busy: Out(1)

    def __init__(self, blocks: Mapping[str, wiring.Component], depth: int = 256,
                 wide_depth: int | None = None, frame_timeout: int = 1 << 22):
        if not 1 <= depth <= 1 << 16:
            raise ValueError(f"depth {depth} outside 1..65536")
        self.blocks = dict(blocks)
        self.depth = depth
        self.frame_timeout = frame_timeout
        self.ports: list[Port] = port_map({n: b.signature for n, b in self.blocks.items()},
                                          depth, wide_depth)
        self.digest = map_digest(self.ports)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        ports, nblocks = self.ports, len(self.blocks)
        max_wb = max((p.word_bytes for p in ports), default=1)

        # ---- request parsing state ------------------------------------------------------------
        op = Signal(8)
        length = Signal(16)
        to_come = Signal(16)              # payload bytes still to come
        total = Signal(8)                 # the request's running checksum
        args = [Signal(8, name=f"arg{i}") for i in range(ARG_BYTES)]
        port_sel = args[0]
        addr = Cat(args[1], args[2])
        count = Cat(args[3], args[4])     # READ word count
        set_len = Cat(args[1], args[2])   # LENGTH word count
        stage = Signal(8 * max_wb, reset_less=True)  # WRITE data: bytes shift in from the top
        last_byte = Signal(8, reset_less=True)      # the byte taken in the previous cycle
        wrem = Signal(range(max_wb))      # bytes of the WRITE word still to come after the next
        # Registered look-aheads keep comparators off the request FSM's byte path:
        word_end = Signal()               # wrem == 0: the next data byte ends a word
        word_start = Signal()             # no WRITE word is half received
        arg_at = Signal(ARG_BYTES)        # one-hot: the next payload byte is args[i]
        write_data = Signal()             # a WRITE's payload bytes from the 3rd on (its data)
        # op == o, one-hot, registered with the op byte (no 8-bit compare after ``op``)
        op_is = {o: Signal(name=f"is_{o.name.lower()}") for o in Op}
        is_write, is_read = op_is[Op.WRITE], op_is[Op.READ]
        last_next = Signal()              # the next payload byte is the last (to_come == 1)
        waddr = Signal(17)                # WRITE address
        load_waddr = Signal()             # waddr loads from args[1:3] (the cycle after args[2])
        raddr = Signal(16)                # READ address
        room = Signal(signed(18))         # p_depth - addr, registered (addr is final 2 cycles
                                          # before count)
        read_fits = Signal()              # count <= room, registered (READ's range check)
        wpending = Signal()
        listen = Signal(init=1)           # rx.ready: see the request FSM
        bad_write = Signal()
        idle = Signal(range(self.frame_timeout + 1))

        # ---- what the selected port is -----------------------------------------------------------
        # ``hit[i]`` says port i is selected; it is loaded from the request byte itself, in the
        # cycle args[0] takes it, so the 8-bit compares sit between two registers and the
        # fields below are plain OR trees of registered one-hots (valid 1 cycle after port_sel).
        hit = [Signal(name=f"hit{p.number}", init=p.number == 0) for p in ports]
        # the same for the block number (START, ABORT, STATUS): ``blk_is[b]`` is block_sel == b
        blk_is = [Signal(name=f"blk_is{b}", init=b == 0) for b in range(nblocks)]
        widths = sorted({p.word_bytes for p in ports})
        wb_hit = {w: Signal(name=f"wb_hit{w}") for w in widths}   # the selected port's word_bytes

        def any_of(members):
            return Cat(*members).any() if members else Const(0)

        def select(value_of, shape):
            """The selected port's ``value_of(port)``: an OR of registered one-hots."""
            return _or_all((Mux(h, value_of(p), 0) for p, h in zip(ports, hit) if value_of(p)),
                           shape)

        p_valid, p_host_writes, p_host_reads, p_stream = Signal(), Signal(), Signal(), Signal()
        p_wb = Signal(range(max_wb + 1))
        p_wb_m1 = Signal(range(max_wb))
        p_depth = Signal(17)
        p_block = Signal(range(max(nblocks, 1)))
        m.d.sync += [p_valid.eq(any_of(hit)),
                     p_host_writes.eq(any_of([h for p, h in zip(ports, hit) if p.kind.host_writes])),
                     p_host_reads.eq(any_of([h for p, h in zip(ports, hit)
                                             if not p.kind.host_writes])),
                     p_stream.eq(any_of([h for p, h in zip(ports, hit) if p.kind.is_stream])),
                     p_wb.eq(select(lambda p: p.word_bytes, p_wb.shape())),
                     p_wb_m1.eq(select(lambda p: p.word_bytes - 1, p_wb_m1.shape())),
                     p_depth.eq(select(lambda p: p.depth, p_depth.shape())),
                     p_block.eq(select(lambda p: p.block_index, p_block.shape()))]
        m.d.sync += [wb_hit[w].eq(any_of([h for p, h in zip(ports, hit) if p.word_bytes == w]))
                     for w in widths]
        wb_is1 = wb_hit.get(1, Const(0))  # the selected port's words are one byte
        # the assembled WRITE word, aligned to bit 0: in wpending's cycle, the last byte is still
        # in ``last_byte`` (see the request FSM)
        word = Cat(stage[8:], last_byte)
        p_word = _or_all(Mux(wb_hit[w], word >> 8 * (max_wb - w), 0) for w in widths)
        # WRITE lands one cycle after its last byte: address, data and per-port strobes are
        # registered in front of the memories (the host cannot see the cycle).
        host_wdata = Signal(8 * max_wb, reset_less=True)
        host_waddr = Signal(16, reset_less=True)

        # ---- per-block sequencers ----------------------------------------------------------------
        start = Signal(max(nblocks, 1))
        abort = Signal(max(nblocks, 1))
        flush = Signal(max(nblocks, 1))    # start | abort, as a register of its own
        running = Signal(max(nblocks, 1))
        done = Signal(max(nblocks, 1))
        cycles = [Signal(32, name=f"cycles{b}") for b in range(nblocks)]
        first_out = [Signal(32, name=f"first_out{b}") for b in range(nblocks)]
        moved: dict[int, Signal] = {}      # stream port number -> words moved
        lengths: dict[int, Signal] = {}    # stream port number -> words to move
        host_rdata: dict[int, object] = {}  # port number -> value the host READs
        write_en: dict[int, Signal] = {}   # port number -> host write strobe

        for b, (name, block) in enumerate(self.blocks.items()):
            m.submodules[f"block_{name}"] = ResetInserter({"sync": abort[b]})(block)
            finished, out_taken = [], []
            for p in (p for p in ports if p.block_index == b):
                member = getattr(block, p.member)
                write_en[p.number] = we = Signal(name=f"we_{p.number}")
                if not p.kind.is_stream:
                    if p.kind is PortKind.REGISTER_IN:
                        reg = Signal(p.width, name=f"reg_{name}_{p.member}")
                        with m.If(we):
                            m.d.sync += reg.eq(host_wdata)
                        m.d.comb += member.eq(reg)
                    else:
                        host_rdata[p.number] = Value.cast(member)
                    continue
                moved[p.number] = n = Signal(16, name=f"moved_{name}_{p.member}")
                lengths[p.number] = want = Signal(16, name=f"length_{name}_{p.member}")
                lutram = p.width > WIDE_BITS and p.depth < self.depth
                # no collision logic after the RAM: the host never READs an output memory word
                # in the cycle the block writes it (the block is done), and a WRITE into an input
                # memory while its block reads the same word is undefined
                wp, rp = _stream_memory(m, f"mem_{name}_{p.member}", p.width, p.depth, lutram)
                payload = Value.cast(member.payload)
                # Down-counters with registered "non-zero" flags keep comparators out of the
                # paths into the block's valid/ready.
                left = Signal(16, name=f"left_{name}_{p.member}")
                more = Signal(name=f"more_{name}_{p.member}")
                if p.kind is PortKind.INPUT:     # host -> memory -> 2 read stages -> block
                    m.d.comb += [wp.addr.eq(host_waddr), wp.data.eq(host_wdata), wp.en.eq(we)]
                    # A two-stage pipeline on one enable: the address counter, then the RAM's
                    # read (``valid``: stage 1 holds a word), then its output register, which
                    # drives the block (``r_valid``), so the block sees a register, not the
                    # block RAM's slow read data. Both stages advance when the block takes the
                    # word or stage 2 is empty; stage 1 only empties after the last word.
                    valid = Signal(name=f"valid_{name}_{p.member}")
                    r_valid = Signal(name=f"rvalid_{name}_{p.member}")
                    nxt = Signal(16, name=f"next_{name}_{p.member}")
                    fetch = running[b] & more
                    load = ~r_valid | member.ready
                    m.d.comb += [rp.addr.eq(nxt), rp.en.eq(load)]
                    with m.If(load):
                        m.d.sync += [valid.eq(fetch), r_valid.eq(valid)]
                        with m.If(fetch):
                            m.d.sync += [nxt.eq(nxt + 1), left.eq(left - 1), more.eq(left != 1)]
                    if not isinstance(member.valid, Const):
                        m.d.comb += member.valid.eq(r_valid)
                    m.d.comb += payload.eq(rp.data)
                    fin = Signal(name=f"fin_{name}_{p.member}")    # registered n == want
                    togo = Signal(16, name=f"togo_{name}_{p.member}")  # want - n
                    with m.If(r_valid & member.ready):
                        m.d.sync += [n.eq(n + 1), togo.eq(togo - 1), fin.eq(togo == 1)]
                    with m.If(flush[b]):
                        m.d.sync += [nxt.eq(0), valid.eq(0), r_valid.eq(0)]
                else:                             # block -> memory -> host
                    take = running[b] & more
                    if not isinstance(member.ready, Const):
                        m.d.comb += member.ready.eq(take)
                    # Registered write: the block's (maybe unregistered) output meets a flip-flop,
                    # not the block RAM's data setup.
                    w_en = Signal(name=f"wen_{name}_{p.member}")
                    w_addr = Signal(16, name=f"waddr_{name}_{p.member}", reset_less=True)
                    w_data = Signal(p.width, name=f"wdata_{name}_{p.member}", reset_less=True)
                    m.d.sync += [w_en.eq(member.valid & take), w_addr.eq(n), w_data.eq(payload)]
                    m.d.comb += [wp.addr.eq(w_addr), wp.data.eq(w_data), wp.en.eq(w_en)]
                    with m.If(member.valid & take):
                        m.d.sync += [n.eq(n + 1), left.eq(left - 1), more.eq(left != 1)]
                    out_taken.append(member.valid & take)
                    fin = ~more                   # n == want, as left counts want - n down
                    # the word READ: the RAM's read (READ_ADDR), then its output register
                    # (READ_WAIT), so the port multiplexer starts at flip-flops
                    host_rdata[p.number] = rp.data
                    m.d.comb += [rp.addr.eq(raddr), rp.en.eq(1)]
                with m.If(start[b]):        # last, so they win over the updates above
                    m.d.sync += [left.eq(want), more.eq(want != 0), n.eq(0)]
                    if p.kind is PortKind.INPUT:
                        m.d.sync += [togo.eq(want), fin.eq(want == 0)]
                with m.If(abort[b]):
                    m.d.sync += more.eq(0)
                finished.append(fin)              # only read while running

            all_done = Cat(*finished).all() if finished else Const(1)
            any_out = Cat(*out_taken).any() if out_taken else Const(0)
            got_first = Signal(name=f"got_first{b}")
            with m.If(running[b]):
                with m.If(all_done):
                    m.d.sync += [running[b].eq(0), done[b].eq(1)]
                with m.Else():
                    m.d.sync += cycles[b].eq(cycles[b] + 1)
                with m.If(any_out & ~got_first):
                    m.d.sync += [got_first.eq(1), first_out[b].eq(cycles[b] + 1)]
            with m.If(start[b]):
                m.d.sync += [running[b].eq(1), done[b].eq(0), cycles[b].eq(0),
                             first_out[b].eq(0), got_first.eq(0)]
            with m.If(abort[b]):
                m.d.sync += [running[b].eq(0), done[b].eq(0)]
        m.d.comb += self.busy.eq(running.any())

        # ---- WRITE: one memory word (or register) per word_bytes data bytes ----------------------
        w_ok = p_host_writes & ~waddr[16] & (waddr < p_depth)
        for number, we in write_en.items():
            m.d.sync += we.eq(wpending & hit[number] & w_ok)
        with m.If(wpending):
            m.d.sync += [host_wdata.eq(p_word), host_waddr.eq(waddr)]
        m.d.sync += load_waddr.eq(0)
        with m.If(load_waddr):         # a cycle before the first data byte can complete a word
            m.d.sync += waddr.eq(addr)
        with m.If(wpending):
            m.d.sync += [wpending.eq(0), waddr.eq(waddr + 1), listen.eq(1)]
            with m.If(~p_host_writes | (waddr >= p_depth)):
                m.d.sync += bad_write.eq(1)

        # ---- request validation, evaluated when the checksum byte has arrived -------------------
        # Every compare below is registered on its own (all operands are final a cycle or more
        # before args_ok_r is sampled, see below), so each term is an AND of flip-flops.
        blk_ok = any_of(blk_is)
        blk_running = Signal()
        m.d.comb += blk_running.eq(any_of([r & h for r, h in zip(running, blk_is)]))
        len_is = {n: Signal(name=f"len_is{n}") for n in (0, 1, 3, 5)}
        len_ge3, set_len_ok = Signal(), Signal()
        m.d.sync += [f.eq(length == n) for n, f in len_is.items()]
        m.d.sync += [len_ge3.eq(length >= 3), set_len_ok.eq(set_len <= p_depth)]
        # one term per kind of request, each registered on its own (args_ok_r is their OR):
        # one wide AND-OR was 5 LUTs deep (wpending -> args_ok_r 7.99 ns est.)
        args_terms = [
            op_is[Op.INFO] & len_is[0],
            is_write & len_ge3 & p_valid & p_host_writes & word_start & ~bad_write & ~wpending,
            is_read & len_is[5] & p_valid & p_host_reads & read_fits,
            op_is[Op.LENGTH] & len_is[3] & p_valid & p_stream & set_len_ok,
            (op_is[Op.START] | op_is[Op.STATUS] | op_is[Op.ABORT]) & len_is[1] & blk_ok]
        busy = Signal()
        m.d.comb += busy.eq(op_is[Op.LENGTH] & running.bit_select(p_block, 1)
                            | op_is[Op.START] & blk_running)
        known_op = Signal()
        m.d.comb += known_op.eq(Cat(*op_is.values()).any())
        # VALIDATE reads them registered: the arguments are final from the cycle the checksum
        # byte is taken (CHECK); read_fits (count <= p_depth - addr) is registered in the next
        # (IDLE), so args_ok_r is final in VALIDATE, and the adders and compares stay off
        # `status`
        args_ok_terms, known_op_r = Signal(len(args_terms)), Signal()
        m.d.sync += [args_ok_terms.eq(Cat(*args_terms)), known_op_r.eq(known_op)]
        args_ok_r = args_ok_terms.any()

        # ---- response fields ----------------------------------------------------------------------
        status = Signal(8)
        sum_ok = Signal()
        rlen = Signal(16)
        rlen_zero = Signal()             # registered rlen == 0 (rlen is final from EXECUTE on)
        rtotal = Signal(8)               # minus the response's running checksum (its check byte)
        rleft = Signal(16)               # bytes still to send from ``reply``
        sent_all = Signal()              # registered rleft == 0 (keeps the compare off the
                                         # output register's enable)
        first = Signal()                 # the next byte from ``reply`` is the (unchecked) sync
        ok = Signal()                    # status == OK, registered with it
        words_last = Signal()            # registered words_left == 1
        out_word = Signal(8 * max_wb, reset_less=True)
        wb_left = Signal(range(max_wb + 1))
        wb_last = Signal()               # wb_left == 1
        words_left = Signal(16)

        info_bytes = [Const(VERSION, 8), Const(len(ports), 8),
                      *[Const(self.digest >> 8 * i & 0xFF, 8) for i in range(4)]]
        status_replies = []                  # per block: the STATUS payload, byte 0 lowest
        for b in range(nblocks):
            fields = [Cat(running[b], done[b]), cycles[b], first_out[b]]
            fields += [moved[p.number] for p in ports if p.block_index == b and p.kind.is_stream]
            status_replies.append(Cat(*[f.as_unsigned() if len(f) % 8 == 0 else
                                        Cat(f, Const(0, 8 - len(f) % 8)) for f in fields]))
        # The reply header (sync, status, length) and the INFO and STATUS payloads leave from
        # the low byte of one shift register (the payload is snapshotted in EXECUTE, the header
        # added in HEADER), so no byte-index or state mux feeds the output register.
        payload_bits = max(len(Cat(*info_bytes)), *(len(r) for r in status_replies))
        reply = Signal(32 + payload_bits, reset_less=True)
        status_len = Signal(16)
        m.d.comb += status_len.eq(_or_all(
            Mux(blk_is[b], 9 + 2 * sum(1 for p in ports if p.block_index == b and p.kind.is_stream),
                0) for b in range(nblocks)))
        # What EXECUTE snapshots into ``reply``, chosen by flip-flops loaded in VALIDATE, and the
        # snapshot and header loads as registered strobes (``reply`` is wide): no state decode
        # or byte compare in front of its enable or data.
        snap, put_header, snap_info = Signal(), Signal(), Signal()
        snap_blk = [Signal(name=f"snap_blk{b}") for b in range(nblocks)]
        m.d.sync += [snap.eq(0), put_header.eq(0)]
        snapshot = _or_all([Mux(snap_info, Cat(*info_bytes), 0),
                            *(Mux(s, r, 0) for s, r in zip(snap_blk, status_replies))],
                           unsigned(payload_bits))
        # READ's reply length, count * word_bytes, in two registered steps: the selected port's
        # two half products (each constant half of word_bytes' set bits: one adder at most for
        # up to 4 bits), then their sum. The arguments are final from CHECK on, EXECUTE is 3
        # cycles later.
        read_len = Signal(16)
        halves = {w: _split_bits(w) for w in widths}
        read_half = [Signal(16, name=f"read_half{i}") for i in range(2)]
        m.d.sync += [read_half[i].eq(_or_all(Mux(wb_hit[w], times_constant(count, halves[w][i]), 0)
                                             for w in widths if halves[w][i]))
                     for i in range(2)]
        m.d.sync += read_len.eq(read_half[0] + read_half[1])
        rdata = Signal(8 * max_wb)
        m.d.comb += rdata.eq(_or_all(Mux(hit[number], value, 0)
                                     for number, value in host_rdata.items()))

        # Response bytes leave from a register; each is added to the checksum the cycle after
        # it was loaded, so no mux feeds the UART or the adder directly. The register is loaded
        # only when empty (at most a byte per 2 cycles; the UART takes one per 10 bit times),
        # so the wide reply and READ word shift registers shift the cycle after a byte left
        # them, on a registered strobe, not on the reply FSM's decode.
        obuf, ovalid, add_pending = Signal(8), Signal(), Signal()
        obuf_load = Signal()
        from_reply, from_word, from_check = Signal(), Signal(), Signal()
        can_load = ~ovalid
        shift_reply, shift_word = Signal(), Signal()
        m.d.sync += [shift_reply.eq(0), shift_word.eq(0)]
        with m.If(shift_reply):
            m.d.sync += reply.eq(reply >> 8)
        with m.If(snap):
            m.d.sync += reply[32:].eq(snapshot)
        with m.If(put_header):
            m.d.sync += reply[:32].eq(Cat(Const(SYNC_RESPONSE, 8), status, rlen))
        with m.If(shift_word):
            m.d.sync += out_word.eq(out_word >> 8)
        latch_word = Signal()            # READ_LATCH, as a strobe of its own (out_word is wide)
        m.d.sync += latch_word.eq(0)
        with m.If(latch_word):
            m.d.sync += [out_word.eq(rdata), wb_left.eq(p_wb), wb_last.eq(wb_is1)]
        m.d.comb += [self.tx.valid.eq(ovalid), self.tx.payload.eq(obuf)]
        with m.If(self.tx.ready):
            m.d.sync += ovalid.eq(0)
        with m.If(add_pending):
            m.d.sync += [rtotal.eq(rtotal - obuf), add_pending.eq(0)]

        # ---- the request FSM: takes a frame's bytes ------------------------------------------------
        # The host's bytes are taken in the states SYNC .. CHECK, never while a WRITE word is
        # pending: ``listen`` is that, as a register of its own (it drives the byte FIFO's read
        # enable and every register loaded from a byte). It falls with the checksum byte and
        # with a WRITE word's last byte (then rises again with wpending's fall: the frame FSM
        # is in PAYLOAD or CHECK), and rises when the reply's last byte leaves.
        judge = Signal()                  # a whole request has arrived: the reply FSM takes over
        m.d.comb += self.rx.ready.eq(listen)
        got = self.rx.valid & self.rx.ready
        byte = self.rx.payload
        waiting = Signal()
        # Every byte taken shifts into ``stage`` a cycle later, from a copy, on a registered
        # strobe: the enable of its 8 * max_wb flip-flops is a flip-flop, not the FSM's decode.
        # The WRITE word is the last word_bytes bytes (header bytes shift in too, harmlessly).
        shift_in = Signal()
        m.d.sync += [last_byte.eq(byte), shift_in.eq(got)]
        with m.If(shift_in):
            m.d.sync += stage.eq(word)
        # ``expired`` is idle == frame_timeout, registered (a look-ahead of the count)
        expired = Signal()
        with m.If(waiting & ~got):
            m.d.sync += [idle.eq(idle + 1), expired.eq(idle == self.frame_timeout - 1)]
        with m.Else():
            m.d.sync += [idle.eq(0), expired.eq(0)]
        # the length's low byte is 0 / 1, registered with it (LEN1 then compares one byte)
        lo_zero, lo_one = Signal(), Signal()
        m.d.sync += [start.eq(0), abort.eq(0), flush.eq(0)]

        m.d.sync += [room.eq(p_depth - addr), read_fits.eq(count <= room), rlen_zero.eq(rlen == 0),
                     words_last.eq(words_left == 1)]
        m.d.sync += judge.eq(0)
        with m.FSM(name="frame"):
            with m.State("SYNC"):
                # the request state starts afresh in every cycle of SYNC (so no byte compare
                # sits in front of it); VALIDATE judges the last request from registers loaded
                # before (args_ok_r)
                m.d.sync += [total.eq(0), word_start.eq(1), bad_write.eq(0), arg_at.eq(1),
                             write_data.eq(0)]
                with m.If(got & (byte == SYNC_REQUEST)):
                    m.next = "CODE"
            for state, nxt, field in (("CODE", "LEN0", op), ("LEN0", "LEN1", length[:8]),
                                      ("LEN1", None, length[8:])):
                with m.State(state):
                    m.d.comb += waiting.eq(1)
                    with m.If(got):
                        m.d.sync += [field.eq(byte), total.eq(total + byte)]
                        if field is op:
                            m.d.sync += [op_is[o].eq(byte == o) for o in Op]
                        if state == "LEN0":
                            m.d.sync += [lo_zero.eq(byte == 0), lo_one.eq(byte == 1)]
                        if nxt is None:
                            hi_zero = byte == 0
                            m.d.sync += [to_come.eq(Cat(length[:8], byte)),
                                         last_next.eq(lo_one & hi_zero)]
                        if nxt is not None:
                            m.next = nxt
                        else:
                            m.next = "PAYLOAD"
                            with m.If(lo_zero & hi_zero):
                                m.next = "CHECK"
                    with m.If(expired):
                        m.next = "SYNC"
            with m.State("PAYLOAD"):
                m.d.comb += waiting.eq(1)
                with m.If(got):
                    m.d.sync += [total.eq(total + byte), to_come.eq(to_come - 1)]
                    m.d.sync += [arg_at.eq(arg_at << 1), last_next.eq(to_come == 2),
                                 write_data.eq(write_data | is_write & arg_at[2])]
                    for i in range(ARG_BYTES):
                        with m.If(arg_at[i]):
                            m.d.sync += args[i].eq(byte)
                            if i == 0:
                                m.d.sync += [h.eq(byte == n) for n, h in enumerate(hit)]
                                m.d.sync += [h.eq(byte == b) for b, h in enumerate(blk_is)]
                    with m.If(arg_at[2]):
                        m.d.sync += [load_waddr.eq(1), wrem.eq(p_wb_m1), word_end.eq(wb_is1)]
                    with m.If(write_data):
                        with m.If(word_end):
                            m.d.sync += [wrem.eq(p_wb_m1), word_end.eq(wb_is1), wpending.eq(1),
                                         word_start.eq(1), listen.eq(0)]
                        with m.Else():
                            m.d.sync += [wrem.eq(wrem - 1), word_end.eq(wrem == 1),
                                         word_start.eq(0)]
                    with m.If(last_next):
                        m.next = "CHECK"
                with m.If(expired):
                    m.next = "SYNC"
            with m.State("CHECK"):
                m.d.comb += waiting.eq(1)
                with m.If(got):
                    m.d.sync += listen.eq(0)
                    m.d.sync += [sum_ok.eq((total + byte)[:8] == 0), judge.eq(1)]
                    m.next = "SYNC"
                with m.If(expired):
                    m.next = "SYNC"

        # ---- the reply FSM: judges, executes and answers a request -------------------------------
        # A second FSM, one-hot (a flip-flop per state, ``reply_in[name]``), so a state's
        # decode is its flip-flop and each next state is an OR of a few terms; it starts from
        # IDLE the cycle after the checksum byte, while read_fits, then args_ok_r, follow the
        # arguments.
        reply_states = ("IDLE", "VALIDATE", "EXECUTE", "HEADER", "SEND_REPLY", "READ_ADDR",
                        "READ_WAIT", "READ_LATCH", "READ_BYTES", "SEND_CHECK")
        reply_in = {name: Signal(name=f"reply_{name.lower()}", init=name == "IDLE")
                    for name in reply_states}

        def goto(here: str, there: str):
            m.d.sync += [reply_in[here].eq(0), reply_in[there].eq(1)]

        with m.If(reply_in["IDLE"] & judge):
            goto("IDLE", "VALIDATE")
        with m.If(reply_in["VALIDATE"]):
            m.d.sync += ok.eq(0)
            with m.If(~sum_ok):
                m.d.sync += status.eq(Status.BAD_CHECKSUM)
            with m.Elif(~known_op_r):
                m.d.sync += status.eq(Status.BAD_OPCODE)
            with m.Elif(~args_ok_r):
                m.d.sync += status.eq(Status.BAD_ARGUMENT)
            with m.Elif(busy):
                m.d.sync += status.eq(Status.BUSY)
            with m.Else():
                m.d.sync += [status.eq(Status.OK), ok.eq(1)]
            m.d.sync += [snap.eq(1), snap_info.eq(op_is[Op.INFO])]
            m.d.sync += [s.eq(h & ~op_is[Op.INFO]) for s, h in zip(snap_blk, blk_is)]
            goto("VALIDATE", "EXECUTE")
        with m.If(reply_in["EXECUTE"]):      # ``reply`` snapshots the payload (on ``snap``)
            m.d.sync += [rtotal.eq(0), raddr.eq(addr), words_left.eq(count), rlen.eq(0),
                         put_header.eq(1)]
            with m.If(ok):
                with m.If(op_is[Op.INFO]):
                    m.d.sync += rlen.eq(len(info_bytes))
                with m.If(is_read):
                    m.d.sync += rlen.eq(read_len)
                with m.If(op_is[Op.STATUS]):
                    m.d.sync += rlen.eq(status_len)
                with m.If(op_is[Op.LENGTH]):
                    for number, want in lengths.items():
                        with m.If(hit[number]):
                            m.d.sync += want.eq(set_len)
                with m.If(op_is[Op.START]):
                    m.d.sync += [start.eq(Cat(*blk_is)), flush.eq(Cat(*blk_is))]
                with m.If(op_is[Op.ABORT]):
                    m.d.sync += [abort.eq(Cat(*blk_is)), flush.eq(Cat(*blk_is))]
            goto("EXECUTE", "HEADER")
        with m.If(reply_in["HEADER"]):
            # ``reply`` loads the header (on ``put_header``); READ's payload comes from the
            # memory, the others' from ``reply``
            m.d.sync += [rleft.eq(Mux(is_read, 4, rlen + 4)), sent_all.eq(0), first.eq(1)]
            goto("HEADER", "SEND_REPLY")
        with m.If(reply_in["SEND_REPLY"]):
            with m.If(sent_all):
                with m.If(is_read & ~rlen_zero):
                    goto("SEND_REPLY", "READ_ADDR")
                with m.Else():
                    goto("SEND_REPLY", "SEND_CHECK")
            with m.Elif(can_load):           # ``obuf`` loads reply[:8] (from_reply)
                m.d.sync += [first.eq(0), shift_reply.eq(1), rleft.eq(rleft - 1),
                             sent_all.eq(rleft == 1)]
        with m.If(reply_in["READ_ADDR"]):    # the host read port sees raddr this cycle
            goto("READ_ADDR", "READ_WAIT")
        with m.If(reply_in["READ_WAIT"]):    # the read word is registered
            m.d.sync += latch_word.eq(1)
            goto("READ_WAIT", "READ_LATCH")
        with m.If(reply_in["READ_LATCH"]):   # out_word loads (on latch_word, a register)
            goto("READ_LATCH", "READ_BYTES")
        with m.If(reply_in["READ_BYTES"]):    # ``obuf`` loads out_word[:8] (from_word)
            with m.If(can_load):
                m.d.sync += [shift_word.eq(1), wb_left.eq(wb_left - 1),
                             wb_last.eq(wb_left == 2)]
                with m.If(wb_last):
                    m.d.sync += [raddr.eq(raddr + 1), words_left.eq(words_left - 1)]
                    with m.If(words_last):
                        goto("READ_BYTES", "SEND_CHECK")
                    with m.Else():
                        goto("READ_BYTES", "READ_ADDR")
        with m.If(reply_in["SEND_CHECK"] & ~add_pending):   # ``obuf`` loads rtotal (from_check)
            with m.If(can_load):
                m.d.sync += listen.eq(1)
                goto("SEND_CHECK", "IDLE")
        # The byte's source is chosen by the reply FSM's state flip-flops alone (one-hot, so
        # an AND-OR of three bytes), its load enable is an AND-OR of flip-flops: no priority
        # chain of the states' conditions in front of ``obuf`` (it was 8.94 ns est.).
        m.d.comb += obuf_load.eq(can_load & (from_reply | from_word | from_check))
        with m.If(obuf_load):
            m.d.sync += [obuf.eq(_or_all([Mux(reply_in["SEND_REPLY"], reply[:8], 0),
                                          Mux(reply_in["READ_BYTES"], out_word[:8], 0),
                                          Mux(reply_in["SEND_CHECK"], rtotal, 0)],
                                         unsigned(8))),
                         ovalid.eq(1), add_pending.eq(from_reply & ~first | from_word)]
        m.d.comb += [from_reply.eq(reply_in["SEND_REPLY"] & ~sent_all),
                     from_word.eq(reply_in["READ_BYTES"]),
                     from_check.eq(reply_in["SEND_CHECK"] & ~add_pending)]
        return m
