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
# A split must save at least this much over the best single device to be offered (its fixed
# costs are only estimated; a marginal split loses to timing noise and to the two cores slowing
# each other through shared caches and memory).
MIN_SPLIT_GAIN = 1.10


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
    split_axis: str = "channels"  # "channels" | "rows" (output rows [0, cpu_rows) on the CPU)
    cpu_rows: int = 0
    rows: int = 0

    def why(self) -> str:
        def ms(t: float) -> str:
            return "-" if not np.isfinite(t) else f"{t * 1e3:.3f} ms"
        if self.device == "split":
            part = (f"{self.cpu_rows}/{self.rows} rows" if self.split_axis == "rows"
                    else f"{self.cpu_channels}/{self.channels} channels")
            return (f"split {part} to the CPU: CPU alone {ms(self.t_cpu)}, "
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
                            "cpu_channels": c.cpu_channels, "channels": c.channels, "split_axis": c.split_axis,
                            "cpu_rows": c.cpu_rows, "rows": c.rows,
                            "t_cpu_ms": _ms(c.t_cpu), "t_gpu_ms": _ms(c.t_gpu)} for c in self.layers.values()]}

    @classmethod
    def from_json(cls, d: dict) -> HeteroPlan:
        p = cls(d["target"], d["cpu"], d["gpu"], cost_source=d.get("cost_source", "model"),
                predicted_s=float(d.get("predicted_ms", 0.0)) / 1e3, optimal=bool(d.get("optimal", False)))
        for r in d["layers"]:
            p.layers[r["node"]] = LayerChoice(r["node"], r["op"], r["device"], float(r["cpu_share"]),
                                              int(r.get("cpu_channels", 0)), int(r.get("channels", 0)),
                                              _s(r.get("t_cpu_ms")), _s(r.get("t_gpu_ms")),
                                              split_axis=str(r.get("split_axis", "channels")),
                                              cpu_rows=int(r.get("cpu_rows", 0)), rows=int(r.get("rows", 0)))
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


def splittable_rows(node: Node) -> int:
    """Output rows a conv may share between devices (batch 1; 0 = not splittable by rows)."""
    if node.op != "conv" or node.output.type.rank != 4 or node.output.type.shape[0] != 1:
        return 0
    oh = int(node.output.type.shape[2])
    return oh if oh >= 2 else 0


def rows_in_place(node: Node) -> bool:
    """Whether both row halves (and their input/residual slices) can be views of one buffer:
    NHWC rows start on 128-byte boundaries (what OpenCL drivers want of host memory) when a row
    holds a multiple of 32 floats."""
    _, k, _, ow = node.output.type.shape
    _, c, _, w = node.inputs[0].type.shape
    return (ow * k) % 32 == 0 and (w * c) % 32 == 0


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
        rows = splittable_rows(n)
        if (k or rows) and np.isfinite(tc) and np.isfinite(tg):
            work_g = max(tg - times.launch_s, 0.0)  # the launch does not shrink with the share
            share = split_ratio(tc, work_g + times.launch_s)
            moved = n.output.type.size * 4 * (2 if len(n.inputs) > 3 and n.inputs[3] is not None else 1)
            copy_s = 2 * moved / (cpu.bandwidth_gbs * 1e9)

            def together(cpu_part: float, extra: float, tc: float = tc, work_g: float = work_g) -> float:
                return max(cpu_part * tc, (1 - cpu_part) * work_g + times.launch_s) + extra + 3 * times.node_s

            if k:
                choice.cpu_channels = _cpu_channels(k, share)
                ts = together(choice.cpu_channels / k, copy_s)  # the channel concat copies the output
            if rows:
                hr = min(max(int(round(share * rows)), 1), rows - 1)
                tr = together(hr / rows, 0.0 if rows_in_place(n) else copy_s)  # halves land in place
                if tr < ts:
                    ts, choice.split_axis, choice.cpu_rows, choice.rows = tr, "rows", hr, rows
            if ts * MIN_SPLIT_GAIN > min(tc, tg):
                ts = inf
        info[n.name] = choice
        prob.costs[n.name] = np.array([tc, tg, ts], dtype=float)
    producer = {o: n for n in nodes for o in n.outputs}
    for n in nodes:
        for v in n.inputs:
            p = producer.get(v) if v is not None else None
            if p is None:
                continue
            s = times.sync_s if times.sync_s is not None else sync_seconds(v.type.size * 4, gpu, shared_memory)
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
        split_share = (c.cpu_rows / max(c.rows, 1)) if c.split_axis == "rows" else c.cpu_channels / max(c.channels, 1)
        c.cpu_share = {"cpu": 1.0, "gpu": 0.0}.get(c.device, split_share)
        c.t_chosen = float(prob.costs[n.name][sol.choice[n.name]])
        if c.device != "split":
            c.cpu_channels = c.channels if c.device == "cpu" else 0
        plan.layers[n.name] = c
    return plan
