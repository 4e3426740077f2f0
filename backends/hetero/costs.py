"""Per-layer times of a CPU and a GPU device, and what moving data between them costs.

Two sources: the analytical model (a device's peak FLOP/s and bandwidth, derated per kind of
layer; for targets that are not here, like the RK3399's Mali + A72) and measurement (each side's
executable profiled layer by layer on this host, under the thread confinement of the run; what
the co-execution split ratios are computed from). Measured numbers override the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir import Graph, Node
from ..target import Device

# Fraction of peak a device reaches, per kind of layer (dense convs are the best case).
_EFFICIENCY = {
    ("cpu", "conv"): 0.55, ("gpu", "conv"): 0.40,
    ("cpu", "depthwise"): 0.15, ("gpu", "depthwise"): 0.20,
    ("cpu", "fully_connected"): 0.35, ("gpu", "fully_connected"): 0.25,
}
# Fixed cost of dispatching one layer: a kernel launch on the GPU, a function call on the CPU.
LAUNCH_S = {"cpu": 5e-6, "gpu": 30e-6}
# Making a buffer coherent for the other device on a shared-memory SoC (map/unmap + cache
# maintenance), plus a per-byte part; a discrete device copies over its bus instead.
SYNC_S = 40e-6
SYNC_BYTES_FRACTION = 0.25


def _kind(node: Node, g: Graph) -> str:
    if node.op == "conv":
        w = g.const_data(node.inputs[1])
        if w is not None and w.shape[1] == 1 and node.attrs.get("group", 1) == w.shape[0] > 1:
            return "depthwise"
        return "conv"
    return node.op


def node_bytes(node: Node) -> float:
    """Bytes a layer reads and writes (activations and weights, fp32)."""
    total = 0
    for v in (*node.inputs, *node.outputs):
        if v is not None:
            total += v.type.size * 4
    return float(total)


def node_flops(node: Node) -> float:
    from ...ir.registry import get_op

    try:
        fc = get_op(node.op).flops([v.type if v is not None else None for v in node.inputs],
                                   [v.type for v in node.outputs], node.attrs)
    except Exception:  # noqa: BLE001 - an op without a FLOP formula counts as memory-bound
        return 0.0
    return float(fc.total)


def analytical_seconds(node: Node, g: Graph, device: Device) -> float:
    """Model time of `node` on `device`: launch + compute at derated peak + memory traffic."""
    role = "gpu" if device.kind == "gpu" else "cpu"
    eff = _EFFICIENCY.get((role, _kind(node, g)), 0.10)
    flops = node_flops(node)
    return LAUNCH_S[role] + flops / (device.peak_gflops * 1e9 * eff) + node_bytes(node) / (device.bandwidth_gbs * 1e9)


def sync_seconds(nbytes: float, device: Device, shared_memory: bool = True) -> float:
    """Handing a buffer of `nbytes` from one device to the other."""
    if shared_memory:
        return SYNC_S + SYNC_BYTES_FRACTION * nbytes / (device.bandwidth_gbs * 1e9)
    return SYNC_S + nbytes / (device.bandwidth_gbs * 1e9)


@dataclass
class LayerTimes:
    """Seconds per node name on each side (missing = cannot run there), and the fixed costs.

    `launch_s`: dispatching one GPU kernel and learning it finished; `sync_s`: handing a buffer
    to the other device; `node_s`: the host's cost of one more (small) node, e.g. a split's join
    or the enqueue of its GPU half (measured: the host's time to enqueue one kernel).
    """

    cpu: dict[str, float] = field(default_factory=dict)
    gpu: dict[str, float] = field(default_factory=dict)
    source: str = "model"  # "model" | "measured"
    launch_s: float = LAUNCH_S["gpu"]
    sync_s: float | None = None  # None: the model's sync_seconds()
    node_s: float = LAUNCH_S["cpu"]
    whole: dict[str, float] = field(default_factory=dict)  # measured whole-graph latency per side alone


def model_times(g: Graph, cpu: Device, gpu: Device, gpu_ok: set[str]) -> LayerTimes:
    t = LayerTimes()
    for n in g.nodes:
        if n.op == "const":
            continue
        t.cpu[n.name] = analytical_seconds(n, g, cpu)
        if n.name in gpu_ok:
            t.gpu[n.name] = analytical_seconds(n, g, gpu)
    return t


def measured_times(cpu_profile: list, gpu_profile: list, gpu_ok: set[str], launch_s: float = 0.0,
                   sync_s: float | None = None, node_s: float = LAUNCH_S["cpu"]) -> LayerTimes:
    """From per-node profiles (NodeTiming lists) of a CPU-only and a GPU-only run; GPU profiles
    hold kernel times, so the measured launch round trip is added to each."""
    t = LayerTimes(source="measured", launch_s=launch_s, sync_s=sync_s, node_s=node_s)
    for rec in cpu_profile:
        t.cpu[rec.name] = float(rec.seconds)
    for rec in gpu_profile:
        if rec.name in gpu_ok:
            t.gpu[rec.name] = float(rec.seconds) + launch_s
    return t


def split_ratio(t_cpu: float, t_gpu: float) -> float:
    """CPU share of a layer's outputs that makes both halves finish together."""
    if not (np.isfinite(t_cpu) and np.isfinite(t_gpu)) or t_cpu + t_gpu <= 0:
        return 1.0
    return t_gpu / (t_cpu + t_gpu)
