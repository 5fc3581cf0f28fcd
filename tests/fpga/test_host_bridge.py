"""hw/host_bridge.py through the real host driver, in simulation (byte-stream transport).

Round trips are bit-exact against a reference (the tiny ScaleAdd DUT's formula, or golden GELU),
under random gaps on the request stream and back-pressure on the response stream.
"""

import random
import struct

import numpy as np
import pytest

from dut import IN_BITS, OFFSET_BITS, ScaleAdd, reference
from fpga.host import protocol as P
from fpga.host.driver import DeviceError, Driver
from fpga.host.payloads import pack, payload_shape, unpack
from fpga.host.sim_transport import SimTransport
from golden.gelu import gelu
from hw.gelu import Gelu
from hw.host_bridge import HostBridge
from moeaccel import config
from sim.timing import gelu as gelu_timing
from moeaccel.errors import UserError

DEPTH = 64
LO, HI = -(1 << (IN_BITS - 1)), (1 << (IN_BITS - 1)) - 1


def make(blocks, depth=DEPTH, stalls=None, gaps=None, frame_timeout=1 << 16, timeout_s=60):
    bridge = HostBridge(blocks, depth=depth, frame_timeout=frame_timeout)
    transport = SimTransport(bridge, rx_gaps=gaps, tx_stalls=stalls)
    return bridge, transport, Driver(transport, bridge.ports, timeout_s=timeout_s)


@pytest.mark.parametrize("stalls,gaps", [(None, None), ([0, 1, 1], [0, 0, 1]), ([1, 1, 1, 0], [1, 0])])
def test_scale_add_round_trip_is_exact_with_exact_cycle_count(stalls, gaps):
    _, _, drv = make({"scale": ScaleAdd()}, stalls=stalls, gaps=gaps)
    drv.check()
    rng = random.Random(len(stalls or []))
    xs = [LO, HI, 0, -1, *[rng.randint(LO, HI) for _ in range(DEPTH - 4)]]
    offset = -(1 << (OFFSET_BITS - 1))
    result = drv.run("scale", {"i": xs}, {"o": len(xs)}, registers={"offset": offset})
    assert result.outputs["o"] == reference(xs, offset)
    # the bridge's memory read and register, the DUT's register, then one word per cycle
    assert (result.cycles, result.first_out) == (len(xs) + 3, 4)
    assert drv.read(drv.port("scale", "count"), 1) == [len(xs)]
    # a second, shorter run reuses the memories and restarts the counters
    again = drv.run("scale", {"i": xs[:5]}, {"o": 5}, registers={"offset": 7})
    assert again.outputs["o"] == reference(xs[:5], 7) and again.cycles == 8


def test_refused_requests_answer_with_a_status_and_change_nothing():
    bridge, transport, drv = make({"scale": ScaleAdd()})
    i, o = drv.port("scale", "i"), drv.port("scale", "o")
    cases = [
        (P.Op.READ, struct.pack("<BHH", o.number, DEPTH - 1, 2), "BAD_ARGUMENT"),  # past the end
        (P.Op.READ, struct.pack("<BHH", i.number, 0, 1), "BAD_ARGUMENT"),   # inputs are write-only
        (P.Op.WRITE, struct.pack("<BH", o.number, 0) + b"\0\0\0", "BAD_ARGUMENT"),
        (P.Op.WRITE, struct.pack("<BH", i.number, 0) + b"\0", "BAD_ARGUMENT"),   # half a word
        (P.Op.WRITE, struct.pack("<BH", i.number, DEPTH) + b"\0\0", "BAD_ARGUMENT"),
        (P.Op.LENGTH, struct.pack("<BH", i.number, DEPTH + 1), "BAD_ARGUMENT"),
        (P.Op.LENGTH, struct.pack("<BH", 99, 1), "BAD_ARGUMENT"),
        (P.Op.START, bytes([1]), "BAD_ARGUMENT"),
        (P.Op.INFO, b"\0", "BAD_ARGUMENT"),
        (0x7E, b"", "BAD_OPCODE"),
    ]
    for op, payload, status in cases:
        with pytest.raises(DeviceError, match=status):
            drv.transact(op, payload)
    # a corrupted frame, preceded by line noise: BAD_CHECKSUM, and the next request still works
    frame = bytearray(P.request(P.Op.LENGTH, struct.pack("<BH", i.number, 3)))
    frame[-1] ^= 1
    transport.write(b"\x00\xff" + bytes(frame))
    frames = []
    while not frames:
        frames = P.FrameDecoder(P.SYNC_RESPONSE).feed(transport.read()) or frames
    assert frames[0].code == P.Status.BAD_CHECKSUM
    assert drv.status("scale").moved == (0, 0)
    drv.check()


def test_a_stalled_block_reports_progress_refuses_start_and_aborts():
    _, _, drv = make({"scale": ScaleAdd()}, timeout_s=3)
    with pytest.raises(DeviceError, match=r"did not finish.*i 10, o 10"):
        drv.run("scale", {"i": list(range(10))}, {"o": 11})      # expects one word too many
    st = drv.status("scale")
    assert not st.running and not st.done        # the driver aborted it
    drv.set_length(drv.port("scale", "o"), 11)
    drv.start("scale")
    with pytest.raises(DeviceError, match="BUSY"):
        drv.start("scale")
    drv.abort("scale")
    assert drv.run("scale", {"i": [5]}, {"o": 1}, registers={"offset": 0}).outputs["o"] == [15]


def test_half_a_frame_is_dropped_after_the_timeout():
    _, transport, drv = make({"scale": ScaleAdd()}, frame_timeout=40)
    transport.write(P.request(P.Op.INFO)[:3])
    for _ in range(2):
        transport.read()
    drv.check()


@pytest.mark.parametrize("lanes", [1, 2])
def test_gelu_round_trip_bit_exact_with_golden(lanes):
    cfg = config.load("tiny").replace({"hardware.gelu.lanes": lanes})
    ge = cfg.hardware.gelu
    block = Gelu(cfg)
    _, _, drv = make({"gelu": block}, stalls=[0, 0, 1])
    lo, hi = -(1 << (ge.input_bits - 1)), (1 << (ge.input_bits - 1)) - 1
    rng = np.random.default_rng(lanes)
    x = np.concatenate([[lo, hi, 0, -1, 1] * lanes,
                        rng.integers(lo, hi + 1, (DEPTH - 5) * lanes)]).reshape(DEPTH, lanes)
    in_shape, out_shape = payload_shape(block, "i"), payload_shape(block, "o")
    words = [pack(in_shape, {"data": [int(v) for v in row], "tag": k & 1})
             for k, row in enumerate(x)]
    result = drv.run("gelu", {"i": words}, {"o": DEPTH})
    got = [unpack(out_shape, w) for w in result.outputs["o"]]
    assert np.array_equal(np.array([[int(g.data[k]) for k in range(lanes)] for g in got]),
                          gelu(x, cfg))
    assert [int(g.tag) for g in got] == [k & 1 for k in range(DEPTH)]
    # the bridge's memory and register, GELU's pipeline, the handshake
    assert result.first_out == 2 + gelu_timing.latency(cfg) + 1


def test_two_blocks_share_one_bridge():
    cfg = config.load("tiny")
    blocks = {"scale": ScaleAdd(), "gelu": Gelu(cfg)}
    bridge, _, drv = make(blocks)
    assert drv.check().ports == len(bridge.ports) == 6
    assert drv.run("scale", {"i": [1, 2]}, {"o": 2}, registers={"offset": 1}).outputs["o"] == [4, 7]
    shape = payload_shape(blocks["gelu"], "i")
    out = drv.run("gelu", {"i": [pack(shape, {"data": [2048], "tag": 0})]}, {"o": 1})
    assert unpack(payload_shape(blocks["gelu"], "o"), out.outputs["o"][0]).data[0] == \
        int(gelu(np.array([2048]), cfg)[0])


def test_wide_ports_get_shallow_memories_and_still_round_trip():
    from dut import WIDE_BITS, Invert
    bridge = HostBridge({"inv": Invert(), "scale": ScaleAdd()}, depth=DEPTH, wide_depth=8)
    drv = Driver(SimTransport(bridge, tx_stalls=[0, 1]), bridge.ports, timeout_s=60)
    assert [p.depth for p in bridge.ports if p.block == "inv"] == [8, 8]
    assert drv.port("scale", "i").depth == DEPTH
    rng = random.Random(5)
    xs = [(1 << WIDE_BITS) - 1, 0, *[rng.getrandbits(WIDE_BITS) for _ in range(6)]]
    result = drv.run("inv", {"i": xs}, {"o": 8})
    assert result.outputs["o"] == [~x & ((1 << WIDE_BITS) - 1) for x in xs]
    assert result.cycles == 2 + 8
    with pytest.raises(UserError, match="exceed its 8-word memory"):
        drv.write(drv.port("inv", "i"), xs + [0])
