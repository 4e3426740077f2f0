"""Write LayerPlans into the graph: QDQ layers (integer storage, float arithmetic) or integer layers.

Before:
    %y = conv(%x, %w, %b) {...} : f32[...]
After, QDQ (any bit width, fixed point, affine or k-means):
    %x.q = quantize(%x) {dtype="fx8_5"}         (a clip first when W is narrower than the storage)
    %x.dq = dequantize(%x.q)
    %L.w.q = const : fx8_7[...]                  (k-means: centroids, dequantize, indices, gather)
    %y = conv(%x.dq, dequantize(%L.w.q), dequantize(%L.b.q)) {...} : f32[...]
After, integer (8-bit formats, relu or no activation):
    %x.q = quantize(%x) {dtype="u8", scale=[s_x], zero_point=[z_x]}
    %L.acc = conv(%x.q, %L.w.q, %L.b.q) {...} : i32[...]<scale=[s_x*s_w...], zp=[0...], qaxis=1>
    %L.rq = requantize(%L.acc) {dtype="u8", scale=[s_y], zero_point=[z_y], multiplier=[...], shift=[...]}
    %y = dequantize(%L.rq) : f32[...]
A terminal layer (no quantized layer downstream, e.g. the classifier) skips the requantize: its
int32 accumulator is dequantized directly. A layer with a fused residual (`act(conv + b + r)`)
does too, and adds the float residual after: `%y = add(dequantize(%L.acc), %r) {activation}`.
Then dequantize->quantize pairs with identical formats fold away (integers flow straight from one
integer layer into the next) and float weights nothing uses any more are erased.
Preconditions: a verified graph; plans from plan.build_plans for that graph.
"""

from __future__ import annotations

from typing import Any

from ...ir import Graph, Node, Value
from .int8 import has_residual, integer_activation, multipliers
from .kmeans import Codebook
from .plan import LayerPlan
from .schemes import QFormat, accumulator_format

Cache = dict[tuple[str, QFormat], Value]


def _qattrs(fmt: QFormat) -> dict[str, Any]:
    if fmt.is_fixed:
        return {"dtype": fmt.dtype}
    return {"dtype": fmt.dtype, "scale": list(fmt.scale), "zero_point": list(fmt.zero_point), "axis": fmt.axis}


def _op(g: Graph, op: str, inputs: list[Value | None], attrs: dict[str, Any], name: str, before: Node) -> Value:
    return g.add_node(op, inputs, attrs, name=g.fresh_name(name), before=before).output


def quantized_value(g: Graph, x: Value, fmt: QFormat, before: Node, cache: Cache) -> Value:
    """%x in `fmt` (integers), shared by every layer that reads %x in the same format."""
    key = (x.name, fmt)
    if key not in cache:
        src = x
        if fmt.clamped:  # the quantize op saturates to the storage range; W bits need a clip first
            lo, hi = fmt.real_bounds()
            src = _op(g, "clip", [x], {"min": lo, "max": hi}, f"{x.name}.clip", before)
        cache[key] = _op(g, "quantize", [src], _qattrs(fmt), f"{x.name}.q", before)
    return cache[key]


def _dequantize(g: Graph, q: Value, before: Node, dtype: str = "f32") -> Value:
    return _op(g, "dequantize", [q], {"dtype": dtype}, q.name.removesuffix(".q") + ".dq", before)


def _const(g: Graph, data, fmt: QFormat, name: str) -> Value:
    return g.add_const(fmt.quantize(data), name, dtype=fmt.dtype, quant=fmt.quant_params())


def _float_weights(g: Graph, node: Node, fmt: QFormat | Codebook) -> Value:
    """Stored weights (fixed/affine integers or a codebook) dequantized for float arithmetic."""
    w = g.const_data(node.inputs[1])
    if isinstance(fmt, Codebook):
        c = g.add_const(fmt.centroids, f"{node.name}.w.centroids", dtype=fmt.centroid_format.dtype)
        idx = g.add_const(fmt.indices, f"{node.name}.w.indices", dtype="u8")
        return _op(g, "gather", [_dequantize(g, c, node), idx], {"axis": 0}, f"{node.name}.w.dq", node)
    return _dequantize(g, _const(g, w, fmt, f"{node.name}.w.q"), node)


def lower_qdq(g: Graph, node: Node, plan: LayerPlan, cache: Cache) -> None:
    """Quantize the planned variables of `node` in storage; its arithmetic stays float."""
    if plan.act_in is not None:
        node.set_input(0, _dequantize(g, quantized_value(g, node.inputs[0], plan.act_in, node, cache), node))
    if plan.weights is not None:
        node.set_input(1, _float_weights(g, node, plan.weights))
    if plan.bias is not None and len(node.inputs) > 2 and node.inputs[2] is not None:
        b = g.const_data(node.inputs[2])
        node.set_input(2, _dequantize(g, _const(g, b, plan.bias, f"{node.name}.b.q"), node))


def lower_integer(g: Graph, node: Node, plan: LayerPlan, cache: Cache) -> None:
    """Replace `node` by an integer conv/fc (int32 accumulation), a requantize and a dequantize."""
    assert isinstance(plan.weights, QFormat) and plan.act_in is not None
    acc = accumulator_format(plan.act_in, plan.weights)
    xq = quantized_value(g, node.inputs[0], plan.act_in, node, cache)
    wq = _const(g, g.const_data(node.inputs[1]), plan.weights, f"{node.name}.w.q")
    bq = None
    if plan.bias is not None and len(node.inputs) > 2 and node.inputs[2] is not None:
        bq = _const(g, g.const_data(node.inputs[2]), plan.bias, f"{node.name}.b.q")
    old = node.output
    layer, attrs = node.name, {k: (list(v) if isinstance(v, list) else v) for k, v in node.attrs.items()}
    residual = node.inputs[3] if has_residual(node) else None
    epilogue = {k: attrs.pop(k) for k in ("activation", "act_alpha", "act_beta") if k in attrs and residual}
    if residual is None and "activation" in attrs:
        attrs["activation"] = integer_activation(node)
    # The IR infers the accumulator's type, i32 with scale s_x * s_w: the same numbers as `acc`.
    acc_v = g.add_node(node.op, [xq, wq, bq], attrs, name=layer, outputs=[g.fresh_name(f"{layer}.acc")],
                       before=node).output
    rq = acc_v  # a terminal layer's accumulator is dequantized as it is
    if plan.act_out is not None:
        mult, shift = multipliers(acc, plan.act_out)
        rq = _op(g, "requantize", [acc_v], {**_qattrs(plan.act_out), "multiplier": mult, "shift": shift},
                 f"{layer}.rq", node)
    if residual is not None:  # act(dequantize(acc) + residual) in float, as the float layer did
        deq = _op(g, "dequantize", [acc_v], {"dtype": old.type.dtype}, f"{layer}.dq", node)
        _replace_output(g, node, lambda name: g.add_node("add", [deq, residual], epilogue, outputs=[name]).output)
        return
    _replace_output(g, node, lambda name: g.add_node("dequantize", [rq], {"dtype": old.type.dtype},
                                                     outputs=[name]).output)


def _replace_output(g: Graph, node: Node, build) -> None:
    """Erase `node` and give its output's name and uses to the value `build(name)` returns."""
    old = node.output
    uses = [(u, i) for u in list(old.users) for i, v in enumerate(u.inputs) if v is old]
    positions = [k for k, v in enumerate(g.outputs) if v is old]
    for u, i in uses:
        u.set_input(i, None)
    g.outputs = [v for v in g.outputs if v is not old]
    g.erase(node)
    new = build(old.name)
    for u, i in uses:
        u.set_input(i, new)
    for k in positions:
        g.outputs.insert(k, new)


def fold_qdq(g: Graph) -> int:
    """quantize(dequantize(%q)) -> %q where both sides have the same type; returns how many folded."""
    folded = 0
    for q in [n for n in g.nodes if n.op == "quantize"]:
        d = q.inputs[0].producer
        if d is None or d.op != "dequantize" or d.inputs[0].type != q.output.type:
            continue
        g.replace_all_uses(q.output, d.inputs[0])
        g.erase(q)
        if not d.output.users and d.output not in g.outputs:
            g.erase(d)
        folded += 1
    return folded


def remove_dead_consts(g: Graph) -> None:
    for n in reversed(list(g.nodes)):
        if n.op == "const" and not n.output.users and n.output not in g.outputs:
            g.erase(n)


def lower(g: Graph, plans: dict[str, LayerPlan]) -> Graph:
    """Apply every plan to `g` (in place) and return it verified."""
    cache: Cache = {}
    for node in [n for n in g.nodes if n.name in plans]:
        plan = plans[node.name]
        (lower_integer if plan.integer else lower_qdq)(g, node, plan, cache)
    g.toposort()  # new constants were appended at the end
    fold_qdq(g)
    remove_dead_consts(g)
    g.verify()
    return g
