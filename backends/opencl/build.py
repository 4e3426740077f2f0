"""Plan a graph into OpenCL kernels (one program per graph) and host fallbacks.

Each node is lowered with the TVM backend's TE computes (NHWC activations, packed weights,
fused epilogues; plain convolutions get a channel block that matches the GPU register tile),
scheduled as one kernel by codegen.py, and all kernels are generated into one OpenCL C program.
Nodes with no single-kernel form (softmax's two reductions, LRN, reshapes the TE side lacks)
run on hand-written OpenCL (handwritten.py) or, failing that, on the NumPy reference kernels on
the host, with the reason recorded.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import LpdcUnsupportedError
from ...ir import Graph, Node, Value
from ...ir.ops._shape import pads4, pair
from ..tvm.lower import Lowered, is_act4, lower_node
from .codegen import KernelSpec, generate, schedule_kernel

if TYPE_CHECKING:
    from ..tvm.build import Progress

log = logging.getLogger(__name__)

_SKIP = ("const",)
# Per device: the register tile (output columns x output channels) of a conv/FC work-item and
# the work-group size. PoCL runs work-items as loops on a CPU core, so wide channel tiles (whole
# AVX-512 vectors of weights) win: (4, 64) x 16 reached 54 GFLOP/s on one Zen 5 core against 26
# for (8, 8); a Mali-T860 has far fewer registers per thread and wants small tiles, many threads.
GPU_TILES: dict[str, tuple[tuple[int, int], int]] = {"opencl": ((4, 64), 16), "mali": ((4, 8), 64)}


@dataclass
class GpuStep:
    """One node: a kernel of the program (`kernel`), a hand-written one, or None for the host."""

    node: Node
    kernel: str | None
    args: list[Value | np.ndarray] = field(default_factory=list)  # PrimFunc order, output last
    arg_order: list[int] = field(default_factory=list)  # kernel argument i = args[arg_order[i]]
    spec: KernelSpec | None = None
    reason: str = ""
    handwritten: Any = None  # a handwritten.HandKernel


@dataclass
class GpuPlan:
    steps: list[GpuStep]
    source: str  # the OpenCL C program (TVM-generated kernels)

    @property
    def fallbacks(self) -> dict[str, str]:
        return {s.node.name: s.reason for s in self.steps if s.kernel is None and s.handwritten is None}


def lower_gpu(node: Node, g: Graph, channel_block: int = 8) -> Lowered:
    """The node's TE compute for the GPU (plain convs get the GPU's channel block)."""
    if any(v.type.size == 0 for v in node.outputs):
        raise LpdcUnsupportedError("an empty output needs no kernel")
    if node.op == "conv" and node.inputs[0] is not None and is_act4(node.inputs[0]):
        w = g.const_data(node.inputs[1])
        if w is not None and not (node.attrs["group"] == w.shape[0] and w.shape[1] == 1):
            return _lower_conv(node, g, w, channel_block)
    return lower_node(node, g, 8)


def _lower_conv(node: Node, g: Graph, w: np.ndarray, channel_block: int) -> Lowered:
    from ..tvm import compute as C
    from ..tvm.lower import _epi_key, _epilogue, _f32

    _f32(node)
    a = node.attrs
    n, c, h, wd = node.inputs[0].type.shape
    k, _, kh, kw = w.shape
    oh, ow = node.output.type.shape[2:]
    s = C.ConvShape(n, h, wd, c, k, kh, kw, oh, ow, pair(a["stride"], "stride"), tuple(pads4(a["pad"])),
                    pair(a["dilation"], "dilation"), a["group"])
    kb = max(d for d in range(1, channel_block + 1) if k % d == 0)
    epi, extra = _epilogue(node, g, k)
    tensors, _ = C.conv_nhwc(s, kb, epi)
    return Lowered(tensors, [node.inputs[0], C.pack_conv_weight(w, kb), *extra], "conv",
                   ("gpuconv", s, kb, _epi_key(epi)), {"shape": s})


def plan_gpu(g: Graph, only: set[str] | None = None, device: str = "opencl",
             progress: Progress | None = None) -> GpuPlan:
    """Lower and schedule every node it can; identical kernels share one function. `only`: the
    names of the nodes to plan (a heterogeneous plan's GPU side); the others get no step.
    `device` picks the register tile and work-group size (GPU_TILES). `progress(desc, total)
    -> tick` ticks once per node planned."""
    from tvm import te

    from .handwritten import hand_kernel

    tile, local = GPU_TILES.get(device, GPU_TILES["mali"])
    steps: list[GpuStep] = []
    funcs: dict[str, Any] = {}
    specs: dict[str, KernelSpec] = {}
    by_key: dict[tuple, str] = {}
    todo = [n for n in g.nodes if n.op not in _SKIP and (only is None or n.name in only)]
    tick = progress("OpenCL kernels", len(todo)) if progress is not None else (lambda: None)
    for node in todo:
        try:
            low = lower_gpu(node, g, tile[1])
            name = by_key.get(low.key)
            if name is None:
                name = f"g{len(funcs)}_{node.op}_{re.sub(r'[^A-Za-z0-9_]', '_', node.name)[:40]}"
                f = te.create_prim_func(low.tensors).with_attr("global_symbol", name)
                funcs[name], specs[name] = schedule_kernel(f, name, tile, local)
                by_key[low.key] = name
            steps.append(GpuStep(node, name, list(low.args), spec=specs[name]))
        except LpdcUnsupportedError as e:
            hand = hand_kernel(node, g)
            if hand is not None:
                steps.append(GpuStep(node, None, handwritten=hand))
            else:
                steps.append(GpuStep(node, None, reason=e.message))
        tick()
    if not funcs:
        return GpuPlan(steps, "")
    source, order = generate(funcs)
    for s in steps:
        if s.kernel is not None and s.spec is not None:
            names = list(s.spec.params)
            s.arg_order = [names.index(a) for a in order[s.kernel]]
    return GpuPlan(steps, source)
