"""Which device runs each layer, and which layers are split between CPU and GPU: a PBQP.

Every node gets the choices `cpu`, `gpu` (where a GPU kernel exists) and, for convolutions and
fully-connected layers with enough output channels, `split`: output channels shared in the
ratio of the two devices' times on that layer, so both halves finish together, plus the cost of
joining the halves. Edges cost a synchronisation where a value crosses devices (a split layer
reads its input on both). The solver is passes/select/pbqp.py, the one primitive selection uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ...ir import Graph, Node
from ..target import Device
from .costs import LayerTimes, split_ratio, sync_seconds

CHOICES = ("cpu", "gpu", "split")
# Split granularity: output channels per share (the GPU register tile and CPU vector width).
CHANNEL_BLOCK = 8
# A split must save at least this much over the best single device to be offered.
MIN_SPLIT_GAIN = 1.05


@dataclass
class LayerChoice:
    """The decision for one node: device, CPU share of its outputs, and why."""

    node: str
    op: str
    device: str  # "cpu" | "gpu" | "split"
    cpu_share: float  # 1.0 cpu, 0.0 gpu, in between for a split
    cpu_channels: int = 0  # for a split: output channels [0, cpu_channels) on the CPU
    channels: int = 0
    t_cpu: float = float("nan")
    t_gpu: float = float("nan")
    t_chosen: float = float("nan")

    def why(self) -> str:
        def ms(t: float) -> str:
            return "-" if not np.isfinite(t) else f"{t * 1e3:.3f} ms"
        if self.device == "split":
            return (f"split {self.cpu_channels}/{self.channels} channels to the CPU: CPU alone {ms(self.t_cpu)}, "
                    f"GPU alone {ms(self.t_gpu)}, together {ms(self.t_chosen)}")
        if not np.isfinite(self.t_gpu):
            return f"CPU {ms(self.t_cpu)} (no GPU kernel)"
        return f"{self.device.upper()}: CPU {ms(self.t_cpu)} vs GPU {ms(self.t_gpu)}"


@dataclass
class HeteroPlan:
    """Per-node decisions for a CPU + GPU target, with the totals the solver saw."""

    target: str
    cpu: str
    gpu: str
    layers: dict[str, LayerChoice] = field(default_factory=dict)
    cost_source: str = "model"
    predicted_s: float = 0.0
    optimal: bool = False

    def to_json(self) -> dict:
        return {"target": self.target, "cpu": self.cpu, "gpu": self.gpu, "cost_source": self.cost_source,
                "predicted_ms": self.predicted_s * 1e3, "optimal": self.optimal,
                "layers": [{"node": c.node, "op": c.op, "device": c.device, "cpu_share": round(c.cpu_share, 4),
                            "cpu_channels": c.cpu_channels, "channels": c.channels,
                            "t_cpu_ms": _ms(c.t_cpu), "t_gpu_ms": _ms(c.t_gpu)} for c in self.layers.values()]}

    @classmethod
    def from_json(cls, d: dict) -> HeteroPlan:
        p = cls(d["target"], d["cpu"], d["gpu"], cost_source=d.get("cost_source", "model"),
                predicted_s=float(d.get("predicted_ms", 0.0)) / 1e3, optimal=bool(d.get("optimal", False)))
        for r in d["layers"]:
            p.layers[r["node"]] = LayerChoice(r["node"], r["op"], r["device"], float(r["cpu_share"]),
                                              int(r.get("cpu_channels", 0)), int(r.get("channels", 0)),
                                              _s(r.get("t_cpu_ms")), _s(r.get("t_gpu_ms")))
        return p

    def explain(self) -> str:
        counts = {d: sum(c.device == d for c in self.layers.values()) for d in CHOICES}
        lines = [f"plan for {self.target}: CPU side {self.cpu}, GPU side {self.gpu}; costs from the "
                 f"{'measurements' if self.cost_source == 'measured' else 'analytical model'}; predicted "
                 f"{self.predicted_s * 1e3:.2f} ms ({'optimal' if self.optimal else 'heuristic'} PBQP)",
                 f"  {counts['cpu']} layers on the CPU, {counts['gpu']} on the GPU, {counts['split']} split"]
        for c in self.layers.values():
            lines.append(f"  {c.node:<32} {c.op:<16} {c.device:<6} {c.why()}")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)


def _ms(t: float) -> float | None:
    return None if not np.isfinite(t) else round(t * 1e3, 5)


def _s(ms: float | None) -> float:
    return float("nan") if ms is None else float(ms) / 1e3


def splittable_channels(node: Node, g: Graph) -> int:
    """Output channels a split may share (0 = not splittable)."""
    if node.op not in ("conv", "fully_connected"):
        return 0
    w = g.const_data(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if w is None:
        return 0
    if node.op == "conv" and node.attrs.get("group", 1) != 1:
        return 0  # grouped/depthwise: channels are tied to input groups
    k = int(w.shape[0])
    return k if k >= 2 * CHANNEL_BLOCK else 0


def _cpu_channels(k: int, share: float) -> int:
    kc = int(round(share * k / CHANNEL_BLOCK)) * CHANNEL_BLOCK
    return min(max(kc, CHANNEL_BLOCK), k - CHANNEL_BLOCK)


def plan_devices(g: Graph, times: LayerTimes, target: str, cpu: Device, gpu: Device,
                 shared_memory: bool = True) -> HeteroPlan:
    """Solve the device/split assignment for `g` from per-layer `times`."""
    from ...passes.select.pbqp import PBQPProblem, solve

    inf = np.inf
    nodes = [n for n in g.nodes if n.op != "const"]
    prob = PBQPProblem()
    info: dict[str, LayerChoice] = {}
    for n in nodes:
        tc = times.cpu.get(n.name, inf)
        tg = times.gpu.get(n.name, inf)
        k = splittable_channels(n, g)
        ts = inf
        choice = LayerChoice(n.name, n.op, "cpu", 1.0, 0, k, tc, tg)
        if k and np.isfinite(tc) and np.isfinite(tg):
            kc = _cpu_channels(k, split_ratio(tc, tg))
            share = kc / k
            join = 2 * n.output.type.size * 4 / (cpu.bandwidth_gbs * 1e9)
            ts = max(share * tc, (1 - share) * tg) + join
            if ts * MIN_SPLIT_GAIN > min(tc, tg):
                ts = inf
            choice.cpu_channels = kc
        info[n.name] = choice
        prob.costs[n.name] = np.array([tc, tg, ts], dtype=float)
    producer = {o: n for n in nodes for o in n.outputs}
    for n in nodes:
        for v in n.inputs:
            p = producer.get(v) if v is not None else None
            if p is None:
                continue
            s = sync_seconds(v.type.size * 4, gpu, shared_memory)
            # rows: producer cpu/gpu/split (split joins on the host); cols: consumer cpu/gpu/split
            m = np.array([[0, s, s], [s, 0, s], [0, s, s]], dtype=float)
            key = (p.name, n.name)
            prob.edges[key] = prob.edges[key] + m if key in prob.edges else m
    sol = solve(prob)
    plan = HeteroPlan(target, cpu.name, gpu.name, cost_source=times.source, predicted_s=float(sol.cost),
                      optimal=bool(sol.optimal))
    for n in nodes:
        c = info[n.name]
        c.device = CHOICES[sol.choice[n.name]]
        c.cpu_share = {"cpu": 1.0, "gpu": 0.0}.get(c.device, c.cpu_channels / max(c.channels, 1))
        c.t_chosen = float(prob.costs[n.name][sol.choice[n.name]])
        if c.device != "split":
            c.cpu_channels = c.channels if c.device == "cpu" else 0
        plan.layers[n.name] = c
    return plan
