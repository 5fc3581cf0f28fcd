"""The host's view of the blocks a bridge hosts: one numbered *port* per block member.

Both sides derive the same table from the blocks' signatures, so the bridge
(:mod:`hw.host_bridge`) and the host driver (:mod:`fpga.host.driver`) agree by construction;
:func:`map_digest` is reported by the device's INFO command so a driver can tell that a
bitstream was built for other blocks or another config.

A member ``In(stream.Signature(P))`` (the block consumes it) is an ``input`` memory of ``depth``
words of ``width(P)`` bits that the host writes and the bridge streams into the block; a member
``Out(stream.Signature(P))`` is an ``output`` memory that captures what the block produces and
the host reads. Any other member is a one-word register: ``register_in`` (host writes, drives the
block's input) or ``register_out`` (host reads the block's output).
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from typing import Mapping

from amaranth.hdl import Shape
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Flow


class PortKind(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"
    REGISTER_IN = "register_in"
    REGISTER_OUT = "register_out"

    @property
    def is_stream(self) -> bool:
        return self in (PortKind.INPUT, PortKind.OUTPUT)

    @property
    def host_writes(self) -> bool:
        return self in (PortKind.INPUT, PortKind.REGISTER_IN)


@dataclass(frozen=True)
class Port:
    number: int
    block: str
    block_index: int
    member: str
    kind: PortKind
    width: int
    signed: bool
    depth: int  # words (1 for a register)

    @property
    def word_bytes(self) -> int:
        return max(1, (self.width + 7) // 8)


#: stream memories wider than this many bits are kept shallow (see :func:`port_map`)
WIDE_BITS = 144


def port_map(signatures: Mapping[str, wiring.Signature], depth: int,
             wide_depth: int | None = None) -> list[Port]:
    """Number every member of every block, in block order then member order.

    ``signatures`` maps a block name to its component's signature (``component.signature``).
    Stream memories hold ``depth`` words, except those wider than :data:`WIDE_BITS`, which hold
    ``wide_depth`` (if given): a block RAM is at most 36 bits wide, so a 512-bit memory costs 15
    of them at any depth, while a shallow one fits in distributed RAM.
    """
    ports: list[Port] = []
    for b, (block, sig) in enumerate(signatures.items()):
        for name, member in sig.members.items():
            if member.is_signature:
                if not isinstance(member.signature, stream.Signature):
                    raise TypeError(f"{block}.{name}: only stream sub-interfaces can be hosted")
                shape = Shape.cast(member.signature.members["payload"].shape)
                kind = PortKind.INPUT if member.flow == Flow.In else PortKind.OUTPUT
                words = depth
                if wide_depth is not None and Shape.cast(
                        member.signature.members["payload"].shape).width > WIDE_BITS:
                    words = min(depth, wide_depth)
            else:
                shape = Shape.cast(member.shape)
                kind = PortKind.REGISTER_IN if member.flow == Flow.In else PortKind.REGISTER_OUT
                words = 1
            ports.append(Port(len(ports), block, b, name, kind, shape.width, shape.signed, words))
    if len(ports) > 255:
        raise ValueError(f"{len(ports)} ports exceed the protocol's 255")
    return ports


def map_digest(ports: list[Port]) -> int:
    """A 32-bit fingerprint of the port table (CRC-32 of its text)."""
    text = ";".join(f"{p.number},{p.block},{p.member},{p.kind.value},{p.width},{p.depth}"
                    for p in ports)
    return zlib.crc32(text.encode())
