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
        if choice.device == "split":
            _split(g, node, choice.cpu_channels)
        else:
            node.attrs["device"] = choice.device
    g.toposort()  # the halves' weight constants were appended at the end
    g.verify()
    return g


def _const_rows(g: Graph, v: Value | None, k: int, lo: int, hi: int, name: str) -> Value | None:
    """Rows [lo, hi) of a per-output-channel constant (a scalar one is shared as it is)."""
    if v is None:
        return None
    data = g.const_data(v)
    if data is None:
        raise LpdcGraphError(f"split needs constant weights, %{v.name} is computed")
    if data.size == 1:
        return v
    rows = data.reshape(-1) if data.size == k else data
    return g.add_const(np.ascontiguousarray(rows[lo:hi]), name=name)


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
