"""Apply a HeteroPlan to a graph: device annotations, and split layers made explicit.

A split convolution or fully-connected layer becomes two ordinary nodes over slices of its
weights (output channels [0, k) on the CPU, [k, K) on the GPU) and a channel concat that joins
them on the CPU; a fused residual is sliced the same way. Each half keeps the original layer's
epilogue, so both backends see plain nodes and the reference interpreter can check the result.
The join keeps the original output's name, so graph outputs and downstream names do not change.
"""

from __future__ import annotations

import numpy as np

from ...errors import LpdcGraphError
from ...ir import Graph, Node, Value
from ...ir.ops._shape import pads4, pair
from .plan import HeteroPlan


def apply_plan(graph: Graph, plan: HeteroPlan) -> Graph:
    """A copy of `graph` with every node's `device` set ("cpu"/"gpu") and split layers expanded."""
    g = graph.copy()
    for node in list(g.nodes):
        if node.op == "const":
            continue
        choice = plan.layers.get(node.name)
        if choice is None:
            raise LpdcGraphError("the plan has no decision for this node (plan made for another graph?)",
                                 where=f"node '{node.name}'")
        if choice.device == "split" and choice.split_axis == "rows":
            _split_rows(g, node, choice.cpu_rows)
        elif choice.device == "split":
            _split(g, node, choice.cpu_channels)
        else:
            node.attrs["device"] = choice.device
    g.toposort()  # the halves' weight constants were appended at the end
    g.verify()
    return g


def _const_rows(g: Graph, v: Value | None, k: int, lo: int, hi: int, name: str) -> Value | None:
    """Rows [lo, hi) of a per-output-channel constant (a scalar one is shared as it is). A vector
    keeps its shape (a conv's prelu slope is [K,1,1]: flattened it would broadcast along W)."""
    if v is None:
        return None
    data = g.const_data(v)
    if data is None:
        raise LpdcGraphError(f"split needs constant weights, %{v.name} is computed")
    if data.size == 1:
        return v
    axis = data.shape.index(k) if data.size == k else 0
    return g.add_const(np.ascontiguousarray(np.take(data, np.arange(lo, hi), axis=axis)), name=name)


def _split(g: Graph, node: Node, kc: int) -> None:
    x, w = node.inputs[0], node.inputs[1]
    ins = list(node.inputs) + [None] * (5 - len(node.inputs))
    k = int(g.const_data(w).shape[0])
    if not 0 < kc < k:
        raise LpdcGraphError(f"cannot split {k} output channels at {kc}", where=f"node '{node.name}'")
    out = node.output
    halves = []
    for dev, lo, hi in (("cpu", 0, kc), ("gpu", kc, k)):
        tag = f"{node.name}@{dev}"
        wv = _const_rows(g, w, k, lo, hi, f"{tag}.w")
        bv = _const_rows(g, ins[2], k, lo, hi, f"{tag}.b")
        rv = None
        if ins[3] is not None:
            rv = g.add_node("slice", [ins[3]], {"starts": [lo], "ends": [hi], "axes": [1], "device": dev},
                            name=f"{tag}.residual", before=node).output
        sv = _const_rows(g, ins[4], k, lo, hi, f"{tag}.slope")
        attrs = {**node.attrs, "device": dev, "split": [(hi - lo) / k]}
        half = g.add_node(node.op, [x, wv, bv, rv, sv], attrs, name=tag, before=node)
        halves.append(half.output)
    join = g.add_node("concat", halves, {"axis": 1, "device": "cpu"}, name=f"{node.name}@join", before=node)
    g.replace_all_uses(out, join.output)
    consts = [v for v in node.inputs if v is not None and v.producer is not None and v.producer.op == "const"]
    g.erase(node)
    g.rename_value(join.output, out.name)  # erase freed the name
    for v in consts:  # the whole-layer weights, now unused
        if not v.users and v not in g.outputs:
            g.erase(v.producer)


def _rows(g: Graph, v: Value, lo: int, hi: int, name: str, before: Node) -> Value:
    """Rows [lo, hi) of a 4-D activation (the value itself when that is all of it). The slice is
    the host's: in shared memory a batch-1 row range is a view, which both devices can read."""
    if lo == 0 and hi == v.type.shape[2]:
        return v
    return g.add_node("slice", [v], {"starts": [lo], "ends": [hi], "axes": [2], "device": "cpu"},
                      name=name, before=before).output


def _split_rows(g: Graph, node: Node, hc: int) -> None:
    """Output rows [0, hc) on the CPU, the rest on the GPU; each half reads its input rows (with
    the kernel's halo) through a row slice and pads only where the whole layer did."""
    x = node.inputs[0]
    ins = list(node.inputs) + [None] * (5 - len(node.inputs))
    out = node.output
    h, oh = int(x.type.shape[2]), int(out.type.shape[2])
    if not 0 < hc < oh:
        raise LpdcGraphError(f"cannot split {oh} output rows at {hc}", where=f"node '{node.name}'")
    (sh, _), (dh, _) = pair(node.attrs["stride"], "stride"), pair(node.attrs["dilation"], "dilation")
    kh = int(g.const_data(ins[1]).shape[2])
    pt, pl, pb, pr = pads4(node.attrs["pad"])
    keff = (kh - 1) * dh + 1
    end_a = (hc - 1) * sh - pt + keff  # one past the last input row the CPU half reads
    start_b = hc * sh - pt  # the first input row the GPU half reads
    halves = []
    for dev, r0, r1, i0, i1, top, bottom in (
            ("cpu", 0, hc, 0, min(h, end_a), pt, max(0, end_a - h)),
            ("gpu", hc, oh, max(0, start_b), h, max(0, -start_b), pb)):
        tag = f"{node.name}@{dev}"
        xv = _rows(g, x, i0, i1, f"{tag}.input", node)
        rv = _rows(g, ins[3], r0, r1, f"{tag}.residual", node) if ins[3] is not None else None
        attrs = {**node.attrs, "pad": [top, pl, bottom, pr], "device": dev, "split": [(r1 - r0) / oh]}
        half = g.add_node("conv", [xv, ins[1], ins[2], rv, ins[4]], attrs, name=tag, before=node)
        if half.output.type.shape[2] != r1 - r0:
            raise LpdcGraphError(f"row split made {half.output.type.shape[2]} rows, expected {r1 - r0}",
                                 where=f"node '{node.name}'")
        halves.append(half.output)
    join = g.add_node("concat", halves, {"axis": 2, "device": "cpu"}, name=f"{node.name}@join", before=node)
    g.replace_all_uses(out, join.output)
    g.erase(node)
    g.rename_value(join.output, out.name)
