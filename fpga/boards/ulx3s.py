"""The Radiona ULX3S (Lattice ECP5-85F, CABGA381) board top.

The 25 MHz oscillator feeds an EHXPLLL that makes ``cfg.hardware.clock_mhz``; the FTDI
USB-UART (``baud``, 8N1) carries the host protocol to a :class:`~hw.host_bridge.HostBridge`
that hosts the accelerator blocks. LEDs: 0 PLL locked, 1 a block is running, 7 UART error
(sticky overrun or framing error).

Build: ``moeaccel fpga --board ulx3s-85f --config ulx3s --bitstream``; program the board with
``openFPGALoader -b ulx3s build/fpga/<name>/top.bit``.
"""

from typing import Mapping, Sequence

from amaranth import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import fifo, io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from hw import verilog
from hw.host_bridge import HostBridge
from hw.uart import UartRx, UartTx, divisor
from moeaccel.config import DesignConfig

from .ecp5_pll import ehxplll

OSCILLATOR_MHZ = 25.0
DEFAULT_BAUD = 115_200
#: words per bridge stream memory on the board (a compute-unit tile fits)
DEFAULT_DEPTH = 256
#: words per stream memory wider than hw.host_ports.WIDE_BITS (distributed RAM, no block RAM)
WIDE_DEPTH = 32
#: what the board hosts by default: the MoE engine, which contains the router, compute unit,
#: gather, scatter and GELU (hosting those beside it would build them twice)
DEFAULT_BLOCKS = ("moe_engine",)
#: ECP5-85F resources, for utilisation tables
AVAILABLE = {"lut4": 83_640, "ff": 83_640, "mult18": 156, "bram16": 208}


def platform() -> ULX3S_85F_Platform:
    return ULX3S_85F_Platform()


def host_blocks(cfg: DesignConfig, blocks: Sequence[str]) -> dict[str, wiring.Component]:
    """The accelerator blocks named in ``blocks``, built for ``cfg`` (hw.verilog's registry)."""
    return {name: verilog.elaborate(name, cfg) for name in blocks}


class Ulx3sTop(Elaboratable):
    """PLL + UART + host bridge + ``blocks``: names from :data:`hw.verilog.BLOCKS`, or
    ready-made components by name."""

    def __init__(self, cfg: DesignConfig, blocks: Sequence[str] | Mapping[str, wiring.Component],
                 baud: int = DEFAULT_BAUD,
                 depth: int = DEFAULT_DEPTH, wide_depth: int = WIDE_DEPTH):
        self.cfg = cfg
        self.clock_hz = cfg.hardware.clock_mhz * 1e6
        self.baud = baud
        hosted = dict(blocks) if isinstance(blocks, Mapping) else host_blocks(cfg, blocks)
        self.bridge = HostBridge(hosted, depth=depth, wide_depth=wide_depth,
                                 frame_timeout=int(self.clock_hz // 10))

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", dir="-"))
        clk, locked, _ = ehxplll(m, clk25.i, OSCILLATOR_MHZ, self.cfg.hardware.clock_mhz)
        m.domains.sync = sync = ClockDomain()
        m.d.comb += sync.clk.eq(clk)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        # nextpnr derives the PLL output's constraint from clk25's and the PLL dividers.

        div = divisor(self.clock_hz, self.baud)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_pin = rx_pin = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_pin = tx_pin = io.Buffer("o", uart.tx)
        m.submodules.uart_rx = rx = UartRx(div)
        m.submodules.uart_tx = tx = UartTx(div)
        m.submodules.rx_fifo = rx_fifo = fifo.SyncFIFOBuffered(width=8, depth=16)
        m.submodules.bridge = bridge = self.bridge
        m.d.comb += [rx.rx.eq(rx_pin.i), tx_pin.o.eq(tx.tx)]
        m.d.comb += [rx_fifo.w_data.eq(rx.data.payload), rx_fifo.w_en.eq(rx.data.valid),
                     rx.data.ready.eq(rx_fifo.w_rdy)]
        wiring.connect(m, rx_fifo.r_stream, bridge.rx)
        wiring.connect(m, bridge.tx, tx.data)

        leds = [io.Buffer("o", platform.request("led", i, dir="-")) for i in (0, 1, 7)]
        for i, led in enumerate(leds):
            m.submodules[f"led_{i}"] = led
        m.d.comb += [leds[0].o.eq(locked), leds[1].o.eq(bridge.busy),
                     leds[2].o.eq(rx.overrun | rx.framing_error)]
        return m
