"""Energy estimates: per-layer energy from operation and memory-access counts, and a DVFS CPU model.

Per-operation table (`EnergyTable`, pJ per 32-bit operation or access): Horowitz's 45 nm figures as
quoted by seed 003 (figure 6): int add 0.1, float add 0.9, register file 1, int multiply 3.1, float
multiply 3.7, SRAM 5, DRAM 640. Not in that table, so *assumed* here (override them): a division 4
float multiplies (14.8), a comparison one float add (0.9), a transcendental (exp, sqrt, log, ...)
10 float multiplies (37). Override any entry with a JSON file {"float_mult": 4.0, ...}; its "cpu"
key overrides the DVFS model below.

Per layer (from the analyzer's counts at the chosen bit width):
  compute     = mul * E_mul + add * E_add + div * E_div + cmp * E_cmp + other * E_other
                (float costs at 32 bits, integer costs below: 32-bit integer figures, an upper bound)
  weights     = weight bytes / 4 * E_dram        (weights live in DRAM, read once per inference)
  activations = (input + output bytes) / 4 * E_sram, or * E_dram when the planned activation arena
                exceeds `sram_bytes` (activations then live in DRAM too)
A `compute_scale` per layer (e.g. performed / dense operations measured under the effort knobs)
scales that layer's compute energy. Register-file traffic is not charged (operands are assumed to
stay in pipeline registers); the table keeps its figure for user models.

DVFS (`CpuModel`, seed 002 section 4.2.1, after Vogeleer et al.): P = eta*alpha*C*f*V^2 + P_leak.
At frequency f with voltage V(f), a model of `ops` scalar operations and `dram_bytes` of traffic
takes t = ops / (ops_per_cycle * f) + dram_bytes / bandwidth (memory time does not scale with f) and
uses E = P * t. Against a latency target L a point must finish (t <= L) and then idles at P_leak,
so E_L = E + P_leak * (L - t); the lowest E_L wins. Defaults describe a Raspberry Pi 3 (BCM2837):
600-1200 MHz, V linear from 0.8 V to 1.2 V, idle 1.83 W taken as P_leak, and eta*alpha*C from the
6.7 W maximum at 1.2 GHz / 1.2 V: (6.7 - 1.83) / (1.2e9 * 1.2^2) = 2.82 nF.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import LpdcError
from ..ir import Graph
from ..passes.plan_memory import value_bytes
from .analyze import ModelAnalysis, analyze

PJ = 1e-12


@dataclass(frozen=True)
class CpuModel:
    """The DVFS model's parameters (see the module docstring)."""

    freqs_mhz: tuple[float, ...] = (600.0, 700.0, 800.0, 900.0, 1000.0, 1100.0, 1200.0)
    volts: tuple[float, ...] = (0.8, 0.8667, 0.9333, 1.0, 1.0667, 1.1333, 1.2)
    eta_alpha_c_nf: float = 2.818
    leak_w: float = 1.83
    ops_per_cycle: float = 2.0
    mem_gbs: float = 1.0

    def __post_init__(self) -> None:
        if len(self.freqs_mhz) != len(self.volts) or not self.freqs_mhz:
            raise LpdcError("cpu: freqs_mhz and volts must be non-empty and of equal length", where="energy table")
        for name in ("eta_alpha_c_nf", "leak_w", "ops_per_cycle", "mem_gbs"):
            if not getattr(self, name) >= 0 or (name in ("ops_per_cycle", "mem_gbs") and getattr(self, name) == 0):
                raise LpdcError(f"cpu: {name} must be positive, got {getattr(self, name)}", where="energy table")


@dataclass(frozen=True)
class EnergyTable:
    """pJ per 32-bit operation or access; sram_bytes is the on-chip capacity for activations."""

    int_add: float = 0.1
    float_add: float = 0.9
    register_file: float = 1.0
    int_mult: float = 3.1
    float_mult: float = 3.7
    sram: float = 5.0
    dram: float = 640.0
    div: float = 14.8
    cmp: float = 0.9
    other: float = 37.0
    sram_bytes: int = 2 * 1024 * 1024
    cpu: CpuModel = field(default_factory=CpuModel)


def load_table(path: str | Path | None = None) -> EnergyTable:
    """The default table, with the entries of the JSON file at `path` (if any) overriding it."""
    if path is None:
        return EnergyTable()
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise LpdcError(f"cannot read the energy table: {e}", where=str(path)) from None
    return table_from_dict(data, where=str(path))


def table_from_dict(data: Any, where: str = "energy table") -> EnergyTable:
    if not isinstance(data, dict):
        raise LpdcError("an energy table is a JSON object of numbers (pJ per 32-bit operation)", where=where)
    known = {f.name for f in fields(EnergyTable)}
    cpu_known = {f.name for f in fields(CpuModel)}
    cpu_data = data.get("cpu", {})
    if not isinstance(cpu_data, dict):
        raise LpdcError("'cpu' must be an object of DVFS parameters", where=where)
    bad = sorted(set(data) - known) + [f"cpu.{k}" for k in sorted(set(cpu_data) - cpu_known)]
    if bad:
        raise LpdcError(f"unknown entries {bad}; known: {', '.join(sorted(known))}; "
                        f"cpu: {', '.join(sorted(cpu_known))}", where=where)
    try:
        cpu = replace(CpuModel(), **{k: tuple(float(x) for x in v) if isinstance(v, list) else float(v)
                                     for k, v in cpu_data.items()})
        values = {k: int(v) if k == "sram_bytes" else float(v) for k, v in data.items() if k != "cpu"}
    except (TypeError, ValueError) as e:
        raise LpdcError(f"entries must be numbers: {e}", where=where) from None
    if any(not (v >= 0 and math.isfinite(v)) for v in values.values()):
        raise LpdcError("energies must be finite and non-negative", where=where)
    return replace(EnergyTable(), cpu=cpu, **values)


@dataclass(frozen=True)
class LayerEnergy:
    """One layer's energy per inference, in pJ."""

    name: str
    op: str
    macs: int
    ops: int
    compute_pj: float
    weights_pj: float
    activations_pj: float

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.weights_pj + self.activations_pj


@dataclass(frozen=True)
class EnergyReport:
    model: str
    bits: int
    activations_in: str  # "sram" or "dram"
    layers: list[LayerEnergy]
    ops: int
    dram_bytes: int

    def total(self, part: str = "total_pj") -> float:
        return float(sum(getattr(x, part) for x in self.layers))


def estimate(graph: Graph, bits: int = 32, table: EnergyTable | None = None,
             compute_scale: dict[str, float] | None = None, analysis: ModelAnalysis | None = None) -> EnergyReport:
    """Per-layer energy of one inference of `graph` (see the module docstring)."""
    table = table or EnergyTable()
    a = analysis or analyze(graph, bits)
    scale = compute_scale or {}
    on_chip = a.total.arena_bytes <= table.sram_bytes
    e_act = table.sram if on_chip else table.dram
    e_mul, e_add = (table.float_mult, table.float_add) if bits == 32 else (table.int_mult, table.int_add)
    nodes = {n.name: n for n in graph.nodes}
    layers, dram = [], a.total.weight_bytes
    for s in a.layers:
        node = nodes[s.name]
        in_bytes = sum(value_bytes(v, bits) for v in node.inputs if v is not None and graph.const_data(v) is None)
        compute = (s.mul * e_mul + s.add * e_add + s.div * table.div + s.cmp * table.cmp
                   + s.other * table.other) * scale.get(s.name, 1.0)
        layers.append(LayerEnergy(s.name, s.op, s.macs, s.ops, compute, s.weight_bytes / 4 * table.dram,
                                  (in_bytes + s.activation_bytes) / 4 * e_act))
        dram += 0 if on_chip else in_bytes + s.activation_bytes
    return EnergyReport(a.model, bits, "sram" if on_chip else "dram", layers, a.total.ops, dram)


@dataclass(frozen=True)
class DvfsPoint:
    freq_mhz: float
    volt: float
    time_s: float
    power_w: float
    energy_j: float
    energy_deadline_j: float | None  # None: misses the latency target (or no target)


def dvfs(ops: int, dram_bytes: int, cpu: CpuModel | None = None, latency_s: float | None = None) -> list[DvfsPoint]:
    """Time, power and energy of `ops` operations at every operating point of `cpu`."""
    cpu = cpu or CpuModel()
    points = []
    for f_mhz, v in zip(cpu.freqs_mhz, cpu.volts, strict=True):
        f = f_mhz * 1e6
        t = ops / (cpu.ops_per_cycle * f) + dram_bytes / (cpu.mem_gbs * 1e9)
        p = cpu.eta_alpha_c_nf * 1e-9 * f * v * v + cpu.leak_w
        e = p * t
        e_l = e + cpu.leak_w * (latency_s - t) if latency_s is not None and t <= latency_s else None
        points.append(DvfsPoint(f_mhz, v, t, p, e, e_l))
    return points


def best_point(points: list[DvfsPoint]) -> DvfsPoint | None:
    """The operating point with the least energy up to the latency target (None if none meets it)."""
    ok = [p for p in points if p.energy_deadline_j is not None]
    return min(ok, key=lambda p: p.energy_deadline_j) if ok else None


def to_json(r: EnergyReport, points: list[DvfsPoint], latency_s: float | None, table: EnergyTable) -> dict[str, Any]:
    best = best_point(points)
    return {"model": r.model, "bits": r.bits, "activations_in": r.activations_in, "table_pj": asdict(table),
            "layers": [dict(asdict(x), total_pj=x.total_pj) for x in r.layers],
            "total_pj": {"compute": r.total("compute_pj"), "weights": r.total("weights_pj"),
                         "activations": r.total("activations_pj"), "total": r.total()},
            "dvfs": {"ops": r.ops, "dram_bytes": r.dram_bytes, "latency_s": latency_s,
                     "points": [asdict(p) for p in points], "best_mhz": best.freq_mhz if best else None}}
