"""Payload layouts of the compute unit's streams, all derived from the design config.

Field order is the bit order (first field = least significant bits), which is what
``tests/hw`` packs and unpacks.
"""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data
from amaranth.utils import bits_for

from moeaccel.config import DesignConfig


def out_bits(cfg: DesignConfig) -> int:
    """Width of an output lane: the int operand format, or GELU's wider input format if larger
    (the ``wide`` command flag saturates to that instead of ``operand_bits``)."""
    return max(cfg.hardware.compute_unit.operand_bits, cfg.hardware.gelu.input_bits)


class Layouts:
    """Every payload layout of :class:`hw.compute_unit.ComputeUnit` for one config.

    * ``command``: ``m`` tokens, ``k`` reduction, ``n`` outputs (each 1..``max_dim``), the
      requantisation ``multiplier`` (unsigned) and ``shift``, ``wide`` (saturate to
      :func:`out_bits` instead of ``operand_bits``), and the fused activation: ``gelu`` (GELU on
      the wide output, then requantise it with ``act_multiplier``/``act_shift`` to
      ``operand_bits``);
    * ``act``: one array step's activations, ``rows`` signed operands (token ``row_base + r``,
      reduction index ``kk``);
    * ``weight``: one array step's weights, ``cols`` signed operands (row ``kk`` of the tile's
      weight columns);
    * ``bias``: one tile's ``cols`` biases in accumulator units (signed ``accumulator_bits``);
    * ``tile``: per-tile bookkeeping that travels with the tile's results;
    * ``drain``: one row of accumulators leaving the array, with its tile's requant settings;
    * ``requantised``: one requantised row on its way to the fused activation (``out``'s fields
      and the activation settings);
    * ``out``: one output row: token index ``row`` (0..m-1), ``cols`` lanes of signed
      :func:`out_bits`, ``last`` on the GEMM's final beat.

    ``lanes`` (default ``cols``) narrows the lane arrays of ``drain``, ``requantised`` and
    ``out`` to one group of a row, as the output pipeline carries them when
    ``compute_unit.output_lanes`` is set.
    """

    def __init__(self, cfg: DesignConfig, lanes: int | None = None):
        cu = cfg.hardware.compute_unit
        lanes = cu.cols if lanes is None else lanes
        dim = unsigned(bits_for(cu.max_dim))
        mult = unsigned(cu.requant_multiplier_bits)
        shift = unsigned(bits_for(cu.requant_max_shift))
        acc = signed(cu.accumulator_bits)
        activation = {"gelu": 1, "act_multiplier": mult, "act_shift": shift}
        self.command = data.StructLayout({
            "m": dim, "k": dim, "n": dim, "multiplier": mult, "shift": shift, "wide": 1,
            **activation,
        })
        self.act = data.ArrayLayout(signed(cu.operand_bits), cu.rows)
        self.weight = data.ArrayLayout(signed(cu.operand_bits), cu.cols)
        self.bias = data.ArrayLayout(acc, cu.cols)
        self.tile = data.StructLayout({
            "row_base": dim, "rows": unsigned(bits_for(cu.rows)), "multiplier": mult,
            "shift": shift, "wide": 1, "last": 1, **activation,
        })
        self.drain = data.StructLayout({
            "acc": data.ArrayLayout(acc, lanes), "row": dim, "multiplier": mult,
            "shift": shift, "wide": 1, "last": 1, **activation,
        })
        self.out = data.StructLayout({
            "data": data.ArrayLayout(signed(out_bits(cfg)), lanes), "row": dim, "last": 1,
        })
        out_fields = {name: field.shape for name, field in self.out}
        self.requantised = data.StructLayout({**out_fields, **activation})
