"""The host protocol: framed commands over a byte stream (the board's USB-UART).

Pure Python, no Amaranth: the host driver, the tests and the hardware bridge
(:mod:`hw.host_bridge`) all take their constants from this module, so there is one definition.

Frames
------
Every frame, in either direction, is::

    SYNC  CODE  LEN_LO LEN_HI  PAYLOAD[LEN]  CHECK

* ``SYNC``: :data:`SYNC_REQUEST` (0xA5) from host to device, :data:`SYNC_RESPONSE` (0x5A) back.
* ``CODE``: an :class:`Op` in a request, a :class:`Status` in a response.
* ``LEN``: payload length in bytes, 16-bit little-endian, at most :data:`MAX_PAYLOAD`.
* ``CHECK``: chosen so that ``CODE + LEN_LO + LEN_HI + sum(PAYLOAD) + CHECK == 0 (mod 256)``.

The device answers every request with exactly one response. A request whose checksum fails is
answered with :attr:`Status.BAD_CHECKSUM` and has no effect; bytes before a ``SYNC`` are skipped.
All multi-byte numbers are little-endian. Memory words are ``ceil(width / 8)`` bytes, little-endian,
the low ``width`` bits significant (signed payloads are sent as their two's complement bits).

Ports
-----
The bridge gives every member of every block it hosts a *port number* (see
:func:`hw.host_bridge.port_map`): a stream the block consumes is an input memory, a stream it
produces is an output memory, and any other signal is a one-word register.

Requests (payload) -> response payload
--------------------------------------
``INFO``      ()                                    -> version u8, ports u8, map_digest u32
``WRITE``     port u8, addr u16, data[n * word]     -> ()
``READ``      port u8, addr u16, count u16          -> data[count * word]
``LENGTH``    port u8, count u16                    -> ()   words to send / to expect
``START``     block u8                              -> ()   stream every input, capture outputs
``STATUS``    block u8                              -> flags u8, cycles u32, first_out u32,
                                                           then one u16 per stream port of the
                                                           block: words moved so far
``ABORT``     block u8                              -> ()   reset the block and its sequencer

``flags`` bit 0 is *running*, bit 1 *done*. ``cycles`` counts clock cycles from START until the
last expected output word was accepted; ``first_out`` counts from START to the first output word.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

VERSION = 1
SYNC_REQUEST = 0xA5
SYNC_RESPONSE = 0x5A
MAX_PAYLOAD = 0xFFFF
HEADER_BYTES = 4  # sync, code, len_lo, len_hi


class Op(enum.IntEnum):
    """Request opcodes."""

    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    LENGTH = 0x04
    START = 0x05
    STATUS = 0x06
    ABORT = 0x07


class Status(enum.IntEnum):
    """Response codes."""

    OK = 0x00
    BAD_CHECKSUM = 0x01
    BAD_OPCODE = 0x02
    BAD_ARGUMENT = 0x03  # unknown port or block, address out of range, wrong length
    BUSY = 0x04          # START or LENGTH while the block runs


class Flag(enum.IntFlag):
    RUNNING = 0x01
    DONE = 0x02


class ProtocolError(Exception):
    """A malformed or unexpected frame (a transport or device fault, not a user error)."""


def checksum(body: bytes) -> int:
    """The CHECK byte for ``body`` = CODE, LEN and PAYLOAD bytes."""
    return (-sum(body)) & 0xFF


def encode(sync: int, code: int, payload: bytes = b"") -> bytes:
    """One frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes([code]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([sync]) + body + bytes([checksum(body)])


def request(op: Op, payload: bytes = b"") -> bytes:
    return encode(SYNC_REQUEST, op, payload)


def response(status: Status, payload: bytes = b"") -> bytes:
    return encode(SYNC_RESPONSE, status, payload)


@dataclass(frozen=True)
class Frame:
    code: int
    payload: bytes


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes, get back the complete frames.

    Bytes before a ``sync`` byte are skipped; a frame whose checksum fails raises
    :class:`ProtocolError` (the device never sends one, so it means a broken link).
    """

    def __init__(self, sync: int):
        self.sync = sync
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while True:
            start = self._buf.find(bytes([self.sync]))
            if start < 0:
                self._buf.clear()
                return frames
            del self._buf[:start]
            if len(self._buf) < HEADER_BYTES:
                return frames
            (length,) = struct.unpack_from("<H", self._buf, 2)
            total = HEADER_BYTES + length + 1
            if len(self._buf) < total:
                return frames
            body = bytes(self._buf[1:total])
            del self._buf[:total]
            if sum(body) & 0xFF:
                raise ProtocolError(f"frame with code 0x{body[0]:02x} fails its checksum")
            frames.append(Frame(body[0], body[3:-1]))

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a frame."""
        return len(self._buf)


# --- payload builders and parsers, shared by the driver and the tests -----------------------
def word_bytes(width: int) -> int:
    return max(1, (width + 7) // 8)


def pack_words(values, width: int) -> bytes:
    """Little-endian words of ``word_bytes(width)`` bytes holding the low ``width`` bits."""
    n, mask = word_bytes(width), (1 << width) - 1
    return b"".join((int(v) & mask).to_bytes(n, "little") for v in values)


def unpack_words(data: bytes, width: int, signed: bool = False) -> list[int]:
    n, mask = word_bytes(width), (1 << width) - 1
    if len(data) % n:
        raise ProtocolError(f"{len(data)} bytes is not a whole number of {n}-byte words")
    out = []
    for i in range(0, len(data), n):
        v = int.from_bytes(data[i:i + n], "little") & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


@dataclass(frozen=True)
class Info:
    version: int
    ports: int
    map_digest: int

    @classmethod
    def parse(cls, payload: bytes) -> "Info":
        if len(payload) != 6:
            raise ProtocolError(f"INFO response has {len(payload)} bytes, expected 6")
        version, ports, digest = struct.unpack("<BBI", payload)
        return cls(version, ports, digest)


@dataclass(frozen=True)
class BlockStatus:
    flags: Flag
    cycles: int
    first_out: int
    moved: tuple[int, ...]

    @property
    def running(self) -> bool:
        return bool(self.flags & Flag.RUNNING)

    @property
    def done(self) -> bool:
        return bool(self.flags & Flag.DONE)

    @classmethod
    def parse(cls, payload: bytes) -> "BlockStatus":
        if len(payload) < 9 or (len(payload) - 9) % 2:
            raise ProtocolError(f"STATUS response has {len(payload)} bytes")
        flags, cycles, first = struct.unpack_from("<BII", payload)
        moved = struct.unpack_from(f"<{(len(payload) - 9) // 2}H", payload, 9)
        return cls(Flag(flags), cycles, first, tuple(moved))
