"""Frame encoding/decoding and payload packing of fpga/host/protocol.py."""

import random

import pytest

from fpga.host import protocol as P


def test_request_frame_layout_and_checksum():
    frame = P.request(P.Op.WRITE, bytes([3, 0x10, 0x00, 0xAB, 0xCD]))
    assert frame[0] == P.SYNC_REQUEST and frame[1] == P.Op.WRITE
    assert frame[2:4] == bytes([5, 0])
    assert frame[4:9] == bytes([3, 0x10, 0x00, 0xAB, 0xCD])
    assert sum(frame[1:]) % 256 == 0


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_decoder_reassembles_frames_split_anywhere_and_skips_noise(chunk):
    rng = random.Random(chunk)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))) for _ in range(20)]
    stream = b"\x00\x13" + b"".join(P.response(P.Status.OK, p) for p in payloads)
    dec = P.FrameDecoder(P.SYNC_RESPONSE)
    frames = []
    for i in range(0, len(stream), chunk):
        frames += dec.feed(stream[i:i + chunk])
    assert [f.payload for f in frames] == payloads
    assert all(f.code == P.Status.OK for f in frames) and dec.pending == 0


def test_decoder_rejects_a_corrupted_frame():
    frame = bytearray(P.response(P.Status.OK, b"\x01\x02\x03"))
    frame[5] ^= 0x40
    with pytest.raises(P.ProtocolError, match="checksum"):
        P.FrameDecoder(P.SYNC_RESPONSE).feed(bytes(frame))


@pytest.mark.parametrize("width,signed", [(1, False), (8, True), (12, True), (20, True), (61, False),
                                          (270, False)])
def test_words_round_trip_at_extremes(width, signed):
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    rng = random.Random(width)
    values = [lo, hi, 0, *[rng.randint(lo, hi) for _ in range(50)]]
    data = P.pack_words(values, width)
    assert len(data) == len(values) * P.word_bytes(width)
    assert P.unpack_words(data, width, signed) == values


def test_status_and_info_parse():
    payload = bytes([P.Flag.DONE]) + (1234).to_bytes(4, "little") + (7).to_bytes(4, "little") \
        + (40).to_bytes(2, "little") + (39).to_bytes(2, "little")
    st = P.BlockStatus.parse(payload)
    assert st.done and not st.running and (st.cycles, st.first_out, st.moved) == (1234, 7, (40, 39))
    info = P.Info.parse(bytes([P.VERSION, 4]) + (0xDEADBEEF).to_bytes(4, "little"))
    assert info == P.Info(P.VERSION, 4, 0xDEADBEEF)
    with pytest.raises(P.ProtocolError):
        P.Info.parse(b"\x01")
