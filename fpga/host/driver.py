"""The host driver: loads vectors into a block's memories, runs it, reads results and cycles.

It speaks :mod:`fpga.host.protocol` through any :class:`~fpga.host.transport.Transport`, so the
same code drives a ULX3S over its USB-UART or the bridge in simulation::

    driver = Driver(transport, bridge_ports)
    result = driver.run("gelu", inputs={"i": xs}, outputs={"o": len(xs)})
    result.outputs["o"], result.cycles

Ports are named ``(block, member)``; the table comes from :func:`hw.host_ports.port_map` and is
checked against the device's INFO digest by :meth:`Driver.check`.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from hw.host_ports import Port, PortKind, map_digest
from moeaccel.errors import UserError

from . import protocol as P
from .transport import Transport


class DeviceError(UserError):
    """The device refused a request or did not answer."""


@dataclass(frozen=True)
class RunResult:
    outputs: dict[str, list[int]]   # output member -> words (sign-extended if the port is signed)
    cycles: int                     # START to last output word, bridge's 1-cycle read included
    first_out: int                  # START to first output word


class Driver:
    """Request/response client for one device (board or simulation)."""

    def __init__(self, transport: Transport, ports: list[Port], timeout_s: float = 10.0,
                 max_chunk: int = 1024):
        self.transport = transport
        self.ports = ports
        self.timeout_s = timeout_s
        self.max_chunk = max_chunk
        self._by_name = {(p.block, p.member): p for p in ports}
        self._blocks = list(dict.fromkeys(p.block for p in ports))
        self._decoder = P.FrameDecoder(P.SYNC_RESPONSE)

    # ---- one request, one response ------------------------------------------------------------
    def transact(self, op: P.Op | int, payload: bytes = b"") -> bytes:
        name = op.name if isinstance(op, P.Op) else f"opcode 0x{op:02x}"
        self.transport.write(P.request(op, payload))
        deadline = time.monotonic() + self.timeout_s
        while True:
            frames = self._decoder.feed(self.transport.read())
            if frames:
                if len(frames) > 1:
                    raise P.ProtocolError(f"{len(frames)} responses to one {name}")
                frame = frames[0]
                if frame.code != P.Status.OK:
                    raise DeviceError(f"{name}: device answered "
                                      f"{_status_name(frame.code)}")
                return frame.payload
            if time.monotonic() > deadline:
                raise DeviceError(f"{name}: no response within {self.timeout_s:g} s")

    # ---- the commands -------------------------------------------------------------------------
    def info(self) -> P.Info:
        return P.Info.parse(self.transact(P.Op.INFO))

    def check(self) -> P.Info:
        """Raise unless the device speaks our protocol version and hosts the same ports."""
        info = self.info()
        if info.version != P.VERSION:
            raise DeviceError(f"device speaks protocol {info.version}, driver {P.VERSION}")
        if info.map_digest != map_digest(self.ports) or info.ports != len(self.ports):
            raise DeviceError("device hosts other blocks or another config (port map digest "
                              f"{info.map_digest:08x}, expected {map_digest(self.ports):08x})")
        return info

    def port(self, block: str, member: str) -> Port:
        try:
            return self._by_name[(block, member)]
        except KeyError:
            raise UserError(f"no port {block}.{member} (ports: "
                            f"{', '.join(f'{b}.{m}' for b, m in self._by_name)})") from None

    def write(self, port: Port, values: Iterable[int], addr: int = 0) -> None:
        values = list(values)
        if addr + len(values) > port.depth:
            raise UserError(f"{port.block}.{port.member}: {len(values)} words at {addr} exceed "
                            f"its {port.depth}-word memory")
        step = max(1, self.max_chunk // port.word_bytes)
        for i in range(0, len(values), step):
            data = P.pack_words(values[i:i + step], port.width)
            self.transact(P.Op.WRITE, struct.pack("<BH", port.number, addr + i) + data)

    def read(self, port: Port, count: int, addr: int = 0) -> list[int]:
        out: list[int] = []
        step = max(1, self.max_chunk // port.word_bytes)
        for i in range(0, count, step):
            n = min(step, count - i)
            data = self.transact(P.Op.READ, struct.pack("<BHH", port.number, addr + i, n))
            out += P.unpack_words(data, port.width, port.signed)
        return out

    def set_length(self, port: Port, count: int) -> None:
        self.transact(P.Op.LENGTH, struct.pack("<BH", port.number, count))

    def block_index(self, block: str) -> int:
        if block not in self._blocks:
            raise UserError(f"no block {block!r} on the device (blocks: {', '.join(self._blocks)})")
        return self._blocks.index(block)

    def start(self, block: str) -> None:
        self.transact(P.Op.START, bytes([self.block_index(block)]))

    def status(self, block: str) -> P.BlockStatus:
        return P.BlockStatus.parse(self.transact(P.Op.STATUS, bytes([self.block_index(block)])))

    def abort(self, block: str) -> None:
        self.transact(P.Op.ABORT, bytes([self.block_index(block)]))

    # ---- a whole run --------------------------------------------------------------------------
    def run(self, block: str, inputs: Mapping[str, Iterable[int]], outputs: Mapping[str, int],
            registers: Mapping[str, int] | None = None) -> RunResult:
        """Load ``inputs`` (member -> words), set ``registers``, run ``block`` until every
        output member has produced its count of words, and read them back."""
        streams = [p for p in self.ports if p.block == block and p.kind.is_stream]
        named = set(inputs) | set(outputs)
        for p in streams:
            if p.member not in named:
                raise UserError(f"{block}.{p.member}: give it in "
                                f"{'inputs' if p.kind is PortKind.INPUT else 'outputs'}")
        for member, value in (registers or {}).items():
            self.write(self.port(block, member), [value])
        for member, values in inputs.items():
            port = self.port(block, member)
            values = list(values)
            self.write(port, values)
            self.set_length(port, len(values))
        for member, count in outputs.items():
            self.set_length(self.port(block, member), count)
        self.start(block)
        deadline = time.monotonic() + self.timeout_s
        while not (st := self.status(block)).done:
            if time.monotonic() > deadline:
                moved = ", ".join(f"{p.member} {n}" for p, n in zip(streams, st.moved))
                self.abort(block)
                raise DeviceError(f"{block} did not finish within {self.timeout_s:g} s "
                                  f"(words moved: {moved}); aborted")
        got = {m: self.read(self.port(block, m), n) for m, n in outputs.items()}
        return RunResult(got, st.cycles, st.first_out)


def _status_name(code: int) -> str:
    try:
        return P.Status(code).name
    except ValueError:
        return f"unknown status 0x{code:02x}"
