"""The result of one simulation: a flat, JSON-ready record and a readable text table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TYPE_CHECKING

from moeaccel.config import DesignConfig

from .energy import Energy

if TYPE_CHECKING:
    from .timeline import Timeline
    from .workloads import Workload

PJ_PER_UJ = 1e6


@dataclass(frozen=True)
class SimResult:
    """Everything ``moeaccel sim`` reports. Cycles are accelerator clock cycles; energy in µJ."""

    config: str
    config_digest: str
    workload: str
    scope: str
    clock_mhz: float
    inferences: int
    tokens_per_inference: int
    steps: int
    total_cycles: int
    latency_ms: float               # per inference
    tokens_per_s: float
    inferences_per_s: float
    macs: int
    mac_utilisation: float          # useful MACs / (rows * cols * total_cycles)
    busy_cycles: dict[str, int]     # per block, and the DRAM channel's transfer cycles
    dram_bytes: dict[str, int]      # weights, activations
    dram_stall_cycles: int          # compute pipeline idle waiting for DRAM
    routing: dict[str, int]         # token slots kept, dropped by capacity, sent to null experts
    energy_uj: dict[str, float]     # mac, buffers, dram, static, total (whole run)
    energy_per_inference_uj: float
    roofline: dict[str, Any]
    expert_tokens: dict[int, list[int]]  # first inference: tokens computed per expert, per layer

    @property
    def tokens_dropped(self) -> int:
        return self.routing["dropped"]

    @classmethod
    def from_run(cls, cfg: DesignConfig, workload: "Workload", tl: "Timeline",
                 busy_cycles: dict[str, int], macs: int, energy: Energy, routing: dict[str, int],
                 expert_tokens: dict[int, list[int]], steps: int) -> "SimResult":
        hw = cfg.hardware
        clock_hz = hw.clock_mhz * 1e6
        seconds = tl.total_cycles / clock_hz
        n = workload.inferences
        tokens = cfg.model.tokens
        peak = hw.compute_unit.rows * hw.compute_unit.cols
        dram = tl.weight_bytes + tl.activation_bytes
        intensity = macs / dram if dram else float("inf")
        achieved = macs / tl.total_cycles if tl.total_cycles else 0.0
        attainable = min(peak, intensity * hw.dram.bytes_per_cycle)
        return cls(
            config=cfg.name, config_digest=cfg.digest(), workload=workload.spec.name,
            scope=workload.spec.scope, clock_mhz=hw.clock_mhz, inferences=n,
            tokens_per_inference=tokens, steps=steps, total_cycles=tl.total_cycles,
            latency_ms=seconds / n * 1e3,
            tokens_per_s=n * tokens / seconds if seconds else 0.0,
            inferences_per_s=n / seconds if seconds else 0.0,
            macs=macs, mac_utilisation=achieved / peak,
            busy_cycles=busy_cycles,
            dram_bytes={"weights": tl.weight_bytes, "activations": tl.activation_bytes},
            dram_stall_cycles=tl.stall_cycles, routing=routing,
            energy_uj=energy.as_dict(1 / PJ_PER_UJ),
            energy_per_inference_uj=energy.total / PJ_PER_UJ / n,
            roofline={
                "peak_macs_per_cycle": peak,
                "dram_bytes_per_cycle": hw.dram.bytes_per_cycle,
                "intensity_macs_per_byte": intensity,
                "attainable_macs_per_cycle": attainable,
                "achieved_macs_per_cycle": achieved,
                "bound": "compute" if peak <= intensity * hw.dram.bytes_per_cycle else "dram",
            },
            expert_tokens=expert_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens_dropped"] = self.tokens_dropped
        data["expert_tokens"] = {str(k): v for k, v in self.expert_tokens.items()}
        return data

    def text(self) -> str:
        """A readable report (the default output of ``moeaccel sim``)."""
        r = self
        total = r.total_cycles or 1
        lines = [
            f"{r.workload} on {r.config} ({r.config_digest}), {r.scope} scope, "
            f"{r.inferences} inference(s) of {r.tokens_per_inference} tokens",
            "",
            f"  total cycles        {r.total_cycles:>14,}",
            f"  latency             {r.latency_ms:>14.3f} ms per inference at {r.clock_mhz:g} MHz",
            f"  throughput          {r.tokens_per_s:>14,.0f} tokens/s  {r.inferences_per_s:,.1f} inferences/s",
            f"  MAC utilisation     {r.mac_utilisation:>14.1%}  ({r.macs:,} MACs)",
            f"  DRAM stall          {r.dram_stall_cycles:>14,} cycles ({r.dram_stall_cycles / total:.1%})",
            f"  DRAM bytes          {r.dram_bytes['weights']:>14,} weights  "
            f"{r.dram_bytes['activations']:,} activations",
            f"  token slots         {r.routing['kept']:>14,} computed  {r.routing['dropped']:,} dropped "
            f"by capacity  {r.routing['null']:,} null",
            f"  roofline            {r.roofline['bound']}-bound: "
            f"{r.roofline['intensity_macs_per_byte']:.1f} MACs/byte, achieved "
            f"{r.roofline['achieved_macs_per_cycle']:.1f} of {r.roofline['attainable_macs_per_cycle']:.1f} "
            f"attainable MACs/cycle",
            "",
            "  busy cycles per block",
        ]
        for block, cycles in r.busy_cycles.items():
            lines.append(f"    {block:<16}{cycles:>14,}  {cycles / total:>6.1%}")
        lines += ["", f"  energy (µJ, whole run; {r.energy_per_inference_uj:,.1f} µJ per inference)"]
        e = r.energy_uj
        for part, uj in e.items():
            share = f"{uj / e['total']:>6.1%}" if part != "total" and e["total"] else ""
            lines.append(f"    {part:<16}{uj:>14,.2f}  {share}")
        return "\n".join(lines)
