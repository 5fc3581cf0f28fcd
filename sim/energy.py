"""Energy of a run from the config's per-action energies (``energy:`` section; defaults and
their sources in ``moeaccel/presets/energy/horowitz-45nm.yaml``).

* ``mac``: useful multiply-accumulates x ``mac_int8_pj``;
* ``buffers``: bytes read from / written to the on-chip buffers (GEMM operands and results, data
  arriving from DRAM) x ``sram_read_pj_per_byte`` / ``sram_write_pj_per_byte``;
* ``dram``: bytes moved over the channel x ``dram_pj_per_byte``;
* ``static``: ``static_mw`` over the run time at ``hardware.clock_mhz``.

``fpga_scale`` multiplies ``mac`` and ``buffers`` (on-chip dynamic energy). The softmax, GELU and
router datapaths are not charged separately (their operand traffic is in ``buffers``); they are a
few per cent of the MACs' operations. ``total`` is exactly the sum of the four parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeaccel.config import DesignConfig

PARTS = ("mac", "buffers", "dram", "static")


@dataclass(frozen=True)
class Energy:
    """Energy in picojoules, by part."""

    mac: float
    buffers: float
    dram: float
    static: float

    @property
    def total(self) -> float:
        return self.mac + self.buffers + self.dram + self.static

    def as_dict(self, scale: float = 1.0) -> dict[str, float]:
        parts = {p: getattr(self, p) * scale for p in PARTS}
        parts["total"] = sum(parts.values())
        return parts


def account(cfg: DesignConfig, *, macs: int, sram_read_bytes: int, sram_write_bytes: int,
            dram_bytes: int, cycles: int) -> Energy:
    """Energy of a run that performed these actions over ``cycles`` cycles."""
    e = cfg.energy
    seconds = cycles / (cfg.hardware.clock_mhz * 1e6)
    return Energy(
        mac=macs * e.mac_int8_pj * e.fpga_scale,
        buffers=(sram_read_bytes * e.sram_read_pj_per_byte
                 + sram_write_bytes * e.sram_write_pj_per_byte) * e.fpga_scale,
        dram=dram_bytes * e.dram_pj_per_byte,
        static=e.static_mw * 1e-3 * seconds * 1e12,
    )
