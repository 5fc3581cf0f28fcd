"""Reading a block RAM without Yosys' collision logic.

An Amaranth synchronous read port promises the old word when the same word is written in the
same cycle. ECP5 block RAMs do not, so Yosys emulates the promise: every write is delayed a
cycle in registers and compared with the read address, and a multiplexer after the RAM picks the
delayed word on a hit. That multiplexer sits right after the RAM's slow unregistered read data
(5.8 ns clock-to-output on ECP5). A memory whose owner never reads a word in the cycle it is
written can drop the emulation: :data:`NO_COLLISION_LOGIC` on the memory, and the read made with
:func:`registered_read`.
"""

from __future__ import annotations

from amaranth import Module, Signal, Value
from amaranth.lib.memory import Memory

#: memory attributes: a read of the word being written is undefined on the FPGA (Yosys)
NO_COLLISION_LOGIC = {"no_rw_check": 1}


def registered_read(m: Module, memory: Memory, addr: Value, en: Value, name: str) -> Signal:
    """The word at ``addr`` one cycle after a cycle with ``en`` high (held while ``en`` is low):
    a synchronous read port's behaviour, built as an asynchronous read and a register, which is
    the form Yosys applies ``no_rw_check`` to when it folds the register into the block RAM.
    Simulation returns the old word on a collision, as a synchronous port does."""
    port = memory.read_port(domain="comb")
    held = Signal(port.data.shape(), name=name, reset_less=True)
    m.d.comb += port.addr.eq(addr)
    with m.If(en):
        m.d.sync += held.eq(port.data)
    return held
