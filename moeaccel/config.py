"""The design configuration: the one source of truth shared by ``hw``, ``sim`` and ``golden``.

A config is YAML with three sections, ``hardware``, ``model`` and ``energy``, loaded into frozen,
typed dataclasses and validated on load. Every block reads its widths, table sizes and dimensions
from here; nothing re-derives a constant.

Presets live in ``moeaccel/presets/*.yaml``. A YAML file may start from a preset with
``base: NAME`` and override only the keys it names::

    base: m3vit-tiny
    hardware:
      compute_unit: {rows: 8, cols: 8}

Errors a user can make (unknown key, wrong type, impossible value, inconsistent sizes) raise
:class:`moeaccel.errors.ConfigError` whose message names the dotted key and the problem.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError
from .yaml_files import read_yaml

PRESET_DIR = Path(__file__).parent / "presets"

ROUNDING_MODES = ("half_up", "truncate")
GATING_STYLES = ("softmax_topk", "topk_softmax")


# --------------------------------------------------------------------------------------------
# Hardware
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComputeUnitConfig:
    """The shared MAC array used by every linear layer.

    ``rows`` tokens times ``cols`` output features are computed in parallel (output-stationary);
    one array step (one step of the reduction dimension for all rows x cols accumulators) per
    cycle. Operands are signed ``operand_bits`` integers, accumulators signed
    ``accumulator_bits``; requantisation to the output format rounds with ``rounding`` and
    saturates.
    """

    rows: int = 16
    cols: int = 16
    operand_bits: int = 8
    accumulator_bits: int = 32
    rounding: str = "half_up"
    requant_multiplier_bits: int = 16
    requant_max_shift: int = 31
    #: largest run-time GEMM dimension (m, k or n) a command may ask for; sizes the counters and
    #: bounds the reduction so the accumulator cannot overflow (see ``validate``)
    max_dim: int = 4096
    #: lanes of the requantisers and fused GELU after the array: 0 (default) means ``cols``, a
    #: whole output row per cycle; a divisor of ``cols`` takes ``cols / output_lanes`` cycles
    #: per row and builds only ``output_lanes`` GELU tables and requantiser multipliers (the
    #: drain hides behind the next tile's ``k`` steps when ``k >= rows * row_cycles + 3``)
    output_lanes: int = 0

    @property
    def lanes_out(self) -> int:
        """Lanes of the output pipeline (``output_lanes``, or ``cols`` when it is 0)."""
        return self.output_lanes or self.cols

    @property
    def row_cycles(self) -> int:
        """Cycles one output row takes through the output pipeline: ``cols / lanes_out``."""
        return self.cols // self.lanes_out


@dataclass(frozen=True)
class SoftmaxConfig:
    """The single-pass (online) softmax unit.

    Logits arrive as signed ``input_bits`` fixed point with ``input_frac_bits`` fraction bits.
    Exponentials are base 2 with an integer running max; ``2^frac`` comes from a table of
    ``exp_table_entries`` entries. The running sum keeps ``sum_frac_bits`` fraction bits; output
    probabilities are unsigned with ``prob_frac_bits`` fraction bits. Rows are 1 to
    ``max_row_length`` elements long; ``lanes`` elements are processed per cycle (only 1 is
    implemented so far). The one
    reciprocal per row comes from an iterative divider producing ``divider_bits_per_cycle``
    quotient bits per cycle. Arithmetic: ``golden/softmax.py``. The accumulate stage takes one
    element every ``accumulate_interval`` cycles (1 or 2): 2 gives the running sum's shift and
    its add a cycle each (a shorter critical path, for a slow FPGA where the router is far from
    the engine's bottleneck).
    """

    lanes: int = 1
    input_bits: int = 16
    input_frac_bits: int = 8
    exp_table_entries: int = 64
    exp_frac_bits: int = 16
    sum_frac_bits: int = 20
    recip_frac_bits: int = 24
    prob_frac_bits: int = 15
    max_row_length: int = 256
    divider_bits_per_cycle: int = 2
    accumulate_interval: int = 1


@dataclass(frozen=True)
class GeluConfig:
    """The GELU unit: GELU(x) = ReLU(x) - delta(|x|), delta from a table with interpolation.

    Inputs are signed ``input_bits`` fixed point with ``input_frac_bits`` fraction bits; outputs
    signed ``output_bits`` with ``output_frac_bits``. The table holds ``table_entries`` linear
    segments (a, c per ROM word, ``table_frac_bits`` fraction bits) covering |x| in
    [0, ``table_range``): half of them of width h = 2^-k over [0, range/3), half of width 2h
    over [range/3, range), so ``table_range`` must be 1.5 * table_entries * 2^-k (6.0 for 128
    entries: h = 1/32). Beyond it delta is taken as 0 (plain ReLU). See golden/gelu.py.
    """

    lanes: int = 1
    input_bits: int = 16
    input_frac_bits: int = 11
    output_bits: int = 20
    output_frac_bits: int = 15
    table_entries: int = 128
    table_range: float = 6.0
    table_frac_bits: int = 18


@dataclass(frozen=True)
class LayerNormConfig:
    """The integer LayerNorm and the residual stream it reads (``golden/layernorm.py``).

    The residual stream is signed ``residual_bits`` integers (one scale per model). Per row the
    unit forms ``d = D*x - sum(x)`` and ``V = sum(d^2) // D + eps``, then the inverse square root
    ``r = floor(2^rsqrt_frac_bits / sqrt(V))`` (one integer division and one integer square root
    per row) and the normalised values ``n = d * r`` rounded to ``norm_frac_bits`` fraction bits;
    ``n * gamma + beta`` is requantised to the compute unit's operands.
    """

    residual_bits: int = 16
    rsqrt_frac_bits: int = 40
    norm_frac_bits: int = 12


@dataclass(frozen=True)
class BufferConfig:
    """On-chip buffers in bytes. ``double_buffered`` weights allow fetching the next tile/expert
    while the current one computes (ping/pong)."""

    weight_bytes: int = 96 * 1024
    activation_bytes: int = 64 * 1024
    output_bytes: int = 64 * 1024
    double_buffered: bool = True


@dataclass(frozen=True)
class DramConfig:
    """The DRAM channel: sustained ``bytes_per_cycle`` at the accelerator clock and a fixed
    ``latency_cycles`` from request to first data."""

    bytes_per_cycle: float = 16.0
    latency_cycles: int = 64


@dataclass(frozen=True)
class HardwareConfig:
    clock_mhz: float = 300.0
    compute_unit: ComputeUnitConfig = field(default_factory=ComputeUnitConfig)
    softmax: SoftmaxConfig = field(default_factory=SoftmaxConfig)
    gelu: GeluConfig = field(default_factory=GeluConfig)
    layernorm: LayerNormConfig = field(default_factory=LayerNormConfig)
    buffers: BufferConfig = field(default_factory=BufferConfig)
    dram: DramConfig = field(default_factory=DramConfig)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """The transformer / MoE model the accelerator runs.

    ``moe_layers`` lists the (0-based) layer indices that are MoE layers; the others use a dense
    MLP of ``mlp_hidden``. Routing: ``experts`` routed experts of hidden size ``expert_hidden``,
    ``top_k`` chosen per token with ``gating`` style, plus ``shared_experts`` that every token
    uses and ``null_experts`` (choosing one means "no computation", so a token may use fewer
    than ``top_k`` real experts). ``capacity_factor`` limits each expert's queue to
    ``ceil(capacity_factor * tokens * top_k / experts)`` tokens, at least 1 and at most
    ``tokens`` (``null``: no limit). ``tasks``
    is the number of task-level routers (one gate weight matrix per task, experts shared).
    """

    tokens: int = 129
    embed_dim: int = 192
    heads: int = 3
    layers: int = 12
    moe_layers: tuple[int, ...] = (1, 3, 5, 7, 9, 11)
    mlp_hidden: int = 768
    experts: int = 16
    top_k: int = 2
    expert_hidden: int = 384
    shared_experts: int = 0
    null_experts: int = 0
    gating: str = "softmax_topk"
    capacity_factor: float | None = None
    tasks: int = 1

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.heads

    @property
    def router_outputs(self) -> int:
        """Logits per token: routed experts plus null experts."""
        return self.experts + self.null_experts

    @property
    def expert_capacity(self) -> int:
        """Maximum tokens one routed expert accepts per layer."""
        if self.capacity_factor is None:
            return self.tokens
        cap = math.ceil(self.capacity_factor * self.tokens * self.top_k / self.experts)
        return max(1, min(self.tokens, cap))


# --------------------------------------------------------------------------------------------
# Energy
# --------------------------------------------------------------------------------------------
ENERGY_TABLE = PRESET_DIR / "energy" / "horowitz-45nm.yaml"


def _energy_default(key: str) -> float:
    """A default from the cited per-action energy table (the one source of these defaults)."""
    return float(_energy_table()[key]["value"])


@functools.cache
def _energy_table() -> dict[str, Any]:
    return yaml.safe_load(ENERGY_TABLE.read_text())


@dataclass(frozen=True)
class EnergyConfig:
    """Per-action energies in picojoules and static power; defaults come from
    ``presets/energy/horowitz-45nm.yaml`` (Horowitz, ISSCC 2014, 45 nm), which cites each figure.
    ``fpga_scale`` multiplies the on-chip dynamic energies (MAC, buffers) to approximate an FPGA
    fabric; DRAM and static energy are not scaled."""

    mac_int8_pj: float = _energy_default("mac_int8_pj")
    sram_read_pj_per_byte: float = _energy_default("sram_read_pj_per_byte")
    sram_write_pj_per_byte: float = _energy_default("sram_write_pj_per_byte")
    dram_pj_per_byte: float = _energy_default("dram_pj_per_byte")
    static_mw: float = _energy_default("static_mw")
    fpga_scale: float = _energy_default("fpga_scale")


@dataclass(frozen=True)
class DesignConfig:
    """A whole design: hardware, the model it runs, and the energy table."""

    name: str = "custom"
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        """A short stable hash of the whole config (for caches keyed by design)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def replace(self, overrides: Mapping[str, Any]) -> "DesignConfig":
        """A copy with dotted-key overrides applied and validated, e.g.
        ``cfg.replace({"hardware.compute_unit.rows": 8, "model.top_k": 1})``."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            node = data
            parts = dotted.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(dotted, "unknown key")
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(dotted, "unknown key")
            node[parts[-1]] = value
        return from_dict(data)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load(name_or_path: str | Path) -> DesignConfig:
    """Load a preset by name or a YAML file by path, resolve ``base:`` and validate."""
    return from_dict(_read_resolved(str(name_or_path), seen=()))


def from_dict(data: Mapping[str, Any]) -> DesignConfig:
    """Build and validate a config from plain data (as read from YAML)."""
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"expected a mapping, got {type(data).__name__}")
    cfg = _build(DesignConfig, data, "")
    validate(cfg)
    return cfg


def _read_resolved(name_or_path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(name_or_path, f"no such preset or file (presets: {', '.join(presets())})")
    key = str(path.resolve())
    if key in seen:
        raise ConfigError(str(path), "'base' chain loops back to itself")
    data = read_yaml(path, "file", ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        data.setdefault("name", path.stem)
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base", "must be a preset name or file path")
    base_ref = base if Path(base).suffix == "" else str((path.parent / base))
    merged = _deep_merge(_read_resolved(base_ref, seen + (key,)), data)
    merged["name"] = data.get("name", path.stem)
    return merged


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{prefix}{key}"
            raise ConfigError(where, f"unknown key (expected one of: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"expected a mapping, got {_describe(value)}")
        return _build(tp, value, f"{where}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(where, f"expected a list, got {_describe(value)}")
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(where, f"expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"config field {where} has unsupported type {tp!r}")  # a bug in this module


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _require(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise ConfigError(where, problem)


def validate(cfg: DesignConfig) -> None:
    """Check values and cross-field consistency; raise :class:`ConfigError` on the first problem."""
    hw, m, e = cfg.hardware, cfg.model, cfg.energy
    cu, sm, ge = hw.compute_unit, hw.softmax, hw.gelu

    _require(hw.clock_mhz > 0, "hardware.clock_mhz", f"must be positive, got {hw.clock_mhz}")
    for name in ("rows", "cols"):
        v = getattr(cu, name)
        _require(v >= 1, f"hardware.compute_unit.{name}", f"must be >= 1, got {v}")
    _require(2 <= cu.operand_bits <= 18, "hardware.compute_unit.operand_bits",
             f"must be in 2..18, got {cu.operand_bits}")
    _require(cu.accumulator_bits >= 2 * cu.operand_bits, "hardware.compute_unit.accumulator_bits",
             f"must be >= 2 * operand_bits ({2 * cu.operand_bits}), got {cu.accumulator_bits}")
    _require(cu.accumulator_bits <= 48, "hardware.compute_unit.accumulator_bits",
             f"must be <= 48, got {cu.accumulator_bits}")
    _require(cu.output_lanes == 0 or (1 <= cu.output_lanes <= cu.cols
                                      and cu.cols % cu.output_lanes == 0),
             "hardware.compute_unit.output_lanes",
             f"must be 0 (all {cu.cols} cols) or a divisor of cols, got {cu.output_lanes}")
    _require(cu.rounding in ROUNDING_MODES, "hardware.compute_unit.rounding",
             f"must be one of {', '.join(ROUNDING_MODES)}, got {cu.rounding!r}")
    _require(2 <= cu.requant_multiplier_bits <= 32, "hardware.compute_unit.requant_multiplier_bits",
             f"must be in 2..32, got {cu.requant_multiplier_bits}")
    _require(1 <= cu.requant_max_shift <= 63, "hardware.compute_unit.requant_max_shift",
             f"must be in 1..63, got {cu.requant_max_shift}")
    # No accumulator overflow by construction: |bias| < 2**(acc-2) and max_dim products of at most
    # 2**(2*operand_bits-2) each stay below 2**(acc-2), so bias + sum fits in acc bits.
    _require(cu.max_dim >= 1, "hardware.compute_unit.max_dim", f"must be >= 1, got {cu.max_dim}")
    _require(cu.max_dim << (2 * cu.operand_bits - 2) <= 1 << (cu.accumulator_bits - 2),
             "hardware.compute_unit.max_dim",
             f"{cu.max_dim} products of {cu.operand_bits}-bit operands could overflow a "
             f"{cu.accumulator_bits}-bit accumulator (need max_dim * 2**{2 * cu.operand_bits - 2} "
             f"<= 2**{cu.accumulator_bits - 2})")
    _largest = max(m.tokens, m.embed_dim, m.mlp_hidden, m.expert_hidden)
    _require(_largest <= cu.max_dim, "hardware.compute_unit.max_dim",
             f"{cu.max_dim} is smaller than the model's largest GEMM dimension ({_largest})")

    _require(sm.lanes == 1, "hardware.softmax.lanes",
             f"only 1 lane is implemented (hw/softmax.py), got {sm.lanes}")
    _require(0 <= sm.input_frac_bits < sm.input_bits <= 32, "hardware.softmax.input_frac_bits",
             f"need 0 <= input_frac_bits < input_bits <= 32, got {sm.input_frac_bits}/{sm.input_bits}")
    _require(_is_pow2(sm.exp_table_entries), "hardware.softmax.exp_table_entries",
             f"must be a power of two, got {sm.exp_table_entries}")
    for name in ("exp_frac_bits", "sum_frac_bits", "recip_frac_bits", "prob_frac_bits"):
        v = getattr(sm, name)
        _require(1 <= v <= 32, f"hardware.softmax.{name}", f"must be in 1..32, got {v}")
    _require(sm.sum_frac_bits >= 16, "hardware.softmax.sum_frac_bits",
             f"must be >= 16 for a 5e-4 softmax, got {sm.sum_frac_bits}")
    _require(sm.max_row_length >= 1, "hardware.softmax.max_row_length",
             f"must be >= 1, got {sm.max_row_length}")
    _require(1 <= sm.divider_bits_per_cycle <= sm.recip_frac_bits + 1,
             "hardware.softmax.divider_bits_per_cycle",
             f"must be in 1..recip_frac_bits + 1, got {sm.divider_bits_per_cycle}")
    _require(sm.accumulate_interval in (1, 2), "hardware.softmax.accumulate_interval",
             f"must be 1 or 2, got {sm.accumulate_interval}")
    _require(sm.exp_frac_bits + sm.recip_frac_bits > sm.prob_frac_bits,
             "hardware.softmax.prob_frac_bits",
             f"must be < exp_frac_bits + recip_frac_bits, got {sm.prob_frac_bits}")

    _require(ge.lanes >= 1, "hardware.gelu.lanes", f"must be >= 1, got {ge.lanes}")
    _require(0 <= ge.input_frac_bits < ge.input_bits <= 32, "hardware.gelu.input_frac_bits",
             f"need 0 <= input_frac_bits < input_bits <= 32, got {ge.input_frac_bits}/{ge.input_bits}")
    _require(0 <= ge.output_frac_bits < ge.output_bits <= 32, "hardware.gelu.output_frac_bits",
             f"need 0 <= output_frac_bits < output_bits <= 32, got {ge.output_frac_bits}/{ge.output_bits}")
    _require(_is_pow2(ge.table_entries), "hardware.gelu.table_entries",
             f"must be a power of two, got {ge.table_entries}")
    _require(ge.table_range > 0, "hardware.gelu.table_range", f"must be positive, got {ge.table_range}")
    _require(ge.table_entries >= 4, "hardware.gelu.table_entries", f"must be >= 4, got {ge.table_entries}")
    _gelu_k = math.log2(1.5 * ge.table_entries / ge.table_range)
    _require(_gelu_k == round(_gelu_k) and 0 <= _gelu_k <= ge.input_frac_bits, "hardware.gelu.table_range",
             f"must be 1.5 * table_entries * 2^-k with 0 <= k <= input_frac_bits "
             f"(e.g. {1.5 * ge.table_entries / 32} for 1/32 steps), got {ge.table_range}")
    _require(1 <= ge.table_frac_bits <= 30, "hardware.gelu.table_frac_bits",
             f"must be in 1..30, got {ge.table_frac_bits}")
    _require(ge.table_frac_bits >= _gelu_k, "hardware.gelu.table_frac_bits",
             f"must be >= {int(_gelu_k)} (log2 of 1/fine step), got {ge.table_frac_bits}")

    ln = hw.layernorm
    _require(cu.operand_bits <= ln.residual_bits <= 32, "hardware.layernorm.residual_bits",
             f"must be in operand_bits..32, got {ln.residual_bits}")
    _require(1 <= ln.norm_frac_bits <= 24, "hardware.layernorm.norm_frac_bits",
             f"must be in 1..24, got {ln.norm_frac_bits}")
    _require(ln.norm_frac_bits <= ln.rsqrt_frac_bits <= 48, "hardware.layernorm.rsqrt_frac_bits",
             f"must be in norm_frac_bits..48, got {ln.rsqrt_frac_bits}")

    b = hw.buffers
    for name in ("weight_bytes", "activation_bytes", "output_bytes"):
        v = getattr(b, name)
        _require(v > 0, f"hardware.buffers.{name}", f"must be positive, got {v}")
    _require(hw.dram.bytes_per_cycle > 0, "hardware.dram.bytes_per_cycle",
             f"must be positive, got {hw.dram.bytes_per_cycle}")
    _require(hw.dram.latency_cycles >= 0, "hardware.dram.latency_cycles",
             f"must be >= 0, got {hw.dram.latency_cycles}")

    for name in ("tokens", "embed_dim", "heads", "layers", "mlp_hidden", "experts", "top_k",
                 "expert_hidden", "tasks"):
        v = getattr(m, name)
        _require(v >= 1, f"model.{name}", f"must be >= 1, got {v}")
    for name in ("shared_experts", "null_experts"):
        v = getattr(m, name)
        _require(v >= 0, f"model.{name}", f"must be >= 0, got {v}")
    _require(m.embed_dim % m.heads == 0, "model.heads",
             f"embed_dim ({m.embed_dim}) must be divisible by heads ({m.heads})")
    _require(m.top_k <= m.router_outputs, "model.top_k",
             f"top_k ({m.top_k}) exceeds experts + null_experts ({m.router_outputs})")
    _require(m.gating in GATING_STYLES, "model.gating",
             f"must be one of {', '.join(GATING_STYLES)}, got {m.gating!r}")
    _require(m.capacity_factor is None or m.capacity_factor > 0, "model.capacity_factor",
             f"must be positive or null, got {m.capacity_factor}")
    for i, layer in enumerate(m.moe_layers):
        _require(0 <= layer < m.layers, f"model.moe_layers[{i}]",
                 f"layer {layer} outside 0..{m.layers - 1}")
    _require(len(set(m.moe_layers)) == len(m.moe_layers), "model.moe_layers", "repeats a layer")
    _require(m.router_outputs <= sm.max_row_length, "model.experts",
             f"experts + null_experts ({m.router_outputs}) exceed hardware.softmax.max_row_length "
             f"({sm.max_row_length})")

    # The array tiles tokens by rows and output features by cols: it may not be larger than the
    # smallest dimension it tiles.
    _require(cu.rows <= m.tokens, "hardware.compute_unit.rows",
             f"{cu.rows} rows exceed the {m.tokens} tokens they tile")
    smallest_out = min(m.embed_dim, m.expert_hidden, m.mlp_hidden)
    _require(cu.cols <= smallest_out, "hardware.compute_unit.cols",
             f"{cu.cols} cols exceed the smallest output dimension they tile ({smallest_out})")

    for name in ("mac_int8_pj", "sram_read_pj_per_byte", "sram_write_pj_per_byte",
                 "dram_pj_per_byte", "static_mw", "fpga_scale"):
        v = getattr(e, name)
        _require(v >= 0, f"energy.{name}", f"must be >= 0, got {v}")
