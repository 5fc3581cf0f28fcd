"""Byte transports the host driver talks through.

A transport moves raw bytes; framing lives in :mod:`fpga.host.protocol`. :class:`SerialTransport`
is the board's USB-UART (needs ``pyserial``); :class:`fpga.host.sim_transport.SimTransport` runs
the same bridge in Amaranth's simulator, so the driver cannot tell a board from a simulation.
"""

from __future__ import annotations

from typing import Protocol

from moeaccel.errors import UserError


class Transport(Protocol):
    def write(self, data: bytes) -> None:
        """Send ``data``."""

    def read(self) -> bytes:
        """Whatever has arrived since the last call (may be empty; may wait briefly)."""


class SerialTransport:
    """A serial port, e.g. ``/dev/ttyUSB0`` for the ULX3S's FTDI chip."""

    def __init__(self, device: str, baud: int, poll_s: float = 0.01):
        try:
            import serial
        except ImportError:
            raise UserError("talking to a board needs pyserial (pip install pyserial)") from None
        try:
            self._port = serial.Serial(device, baud, timeout=poll_s)
        except serial.SerialException as exc:
            raise UserError(f"--port {device}: {exc}") from None

    def write(self, data: bytes) -> None:
        self._port.write(data)

    def read(self) -> bytes:
        return self._port.read(max(1, self._port.in_waiting))

    def close(self) -> None:
        self._port.close()
