"""canonicalize: rewrite equivalent spellings into the one form later passes match on.

Rules (each a small function below, applied greedily to a fixed point):
    identity(x), dropout(x)            -> x
    shape(x)                           -> const (shapes are static), then integer-only nodes on
                                          constants fold (the shape arithmetic of ONNX exports)
    eltwise{op=sum|prod|max|min}(a, b) -> add|mul|max|min(a, b)   (two inputs, no coefficients)
    sub(x, c)                          -> add(x, -c)              (c a float constant)
    div(x, c)                          -> mul(x, 1/c)             (c a finite non-zero float constant)
    gemm(a, B, c)                      -> fully_connected(a, W, bias)
    matmul(x, B) [+ c]                 -> fully_connected(x, B^T, c, axis=rank-1)
    fully_connected(flatten(x))        -> fully_connected(x)      (flatten at axis 1)

Before:  %f = flatten(%x) : f32[1,64]
         %y = gemm(%f, %B, %c) {trans_b=true} : f32[1,10]
After:   %y = fully_connected(%x, %B, %c) : f32[1,10]

Preconditions: weights and biases constant, float and unquantized. gemm: trans_a false, c absent
or broadcast along columns only. matmul: the weight 2-D, x of rank >= 2, c broadcast along the
last axis only. flatten: at axis 1 (fully_connected flattens from axis 1 itself, row-major, so
the products are the same).
Formula: gemm: W = alpha * op(B)^T (M x K), bias = beta * c. matmul: W = B^T, bias = c.
Every rewrite keeps output types; one that would not is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ir import Graph, Node, Value
from .fold_constants import fold_node
from .manager import register_pass
from .pattern import channel_vector, const, is_float, single_user
from .rewrite import const_before, forward, remove_dead, retire_const, run_rules, try_rebuild

_ELTWISE_AS_BINARY = {"sum": "add", "prod": "mul", "max": "max", "min": "min"}


def drop_identity(g: Graph, node: Node) -> bool:
    """identity(x), dropout(x) -> x (dropout is the identity at inference)."""
    return node.op in ("identity", "dropout") and forward(g, node, node.inputs[0])


def fold_shape(g: Graph, node: Node) -> bool:
    """shape(x) -> const; integer-valued nodes on constants -> const."""
    if node.op == "shape":
        x = node.inputs[0].type
        dims = np.asarray(x.shape[slice(node.attrs["start"], node.attrs["end"])], np.int64)
        return forward(g, node, const_before(g, dims, node, f"{node.name}.dims", "i64"))
    return fold_node(g, node, only_ints=True)


def eltwise_to_binary(g: Graph, node: Node) -> bool:
    """eltwise(a, b) without coefficients -> the binary op (add/mul/max/min)."""
    if node.op != "eltwise" or len(node.inputs) != 2 or node.attrs["op"] not in _ELTWISE_AS_BINARY:
        return False
    if not is_float(node.output.type):
        return False
    if node.attrs["coeffs"] and node.attrs["coeffs"] != [1.0, 1.0]:
        return False
    return try_rebuild(g, node, node.inputs, {}, op=_ELTWISE_AS_BINARY[node.attrs["op"]]) is not None


def sub_div_by_const(g: Graph, node: Node) -> bool:
    """sub(x, c) -> add(x, -c); div(x, c) -> mul(x, 1/c): the forms fold-bn folds into weights."""
    if node.op not in ("sub", "div") or not is_float(node.inputs[0].type):
        return False
    c = const(g, node.inputs[1])
    if c is None or not is_float(node.inputs[1].type):
        return False
    if node.op == "div":
        with np.errstate(all="ignore"):
            new, op = (1.0 / c.astype(np.float64)).astype(c.dtype), "mul"
        if not (np.isfinite(c).all() and np.isfinite(new).all() and (c != 0).all()):
            return False  # 1/c must exist in c's type: a tiny c would overflow to inf
    else:
        new, op = -c, "add"
    v = const_before(g, new, node, f"{node.inputs[1].name}.{op}", node.inputs[1].type.dtype)
    old = node.inputs[1]
    ok = try_rebuild(g, node, [node.inputs[0], v], {}, op=op) is not None
    if ok:
        retire_const(g, old, v)
    return ok


def gemm_to_fc(g: Graph, node: Node) -> bool:
    """gemm(a, B, c) with constant B and column-broadcast c -> fully_connected."""
    if node.op != "gemm" or node.attrs["trans_a"] or not is_float(node.inputs[0].type):
        return False
    b = const(g, node.inputs[1])
    if b is None or b.ndim != 2 or not is_float(node.inputs[1].type):
        return False
    w = (b if node.attrs["trans_b"] else b.T).astype(np.float64) * node.attrs["alpha"]
    n = w.shape[0]
    bias = None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        c = const(g, node.inputs[2]) if is_float(node.inputs[2].type) else None
        vec = None if c is None else channel_vector(c, (1, n), 1)
        if vec is None:
            return False
        bias = vec.astype(np.float64) * node.attrs["beta"]
    return _to_fc(g, node, node.inputs[0], w, bias, axis=1, old=node.inputs[1:])


def matmul_to_fc(g: Graph, node: Node) -> bool:
    """matmul(x, B) (+ c, when the add is its only reader) -> fully_connected(x, B^T, c)."""
    if node.op != "matmul" or not is_float(node.inputs[0].type) or node.inputs[0].type.rank < 2:
        return False
    b = const(g, node.inputs[1])
    if b is None or b.ndim != 2 or not is_float(node.inputs[1].type):
        return False
    out = node.output.type
    add = single_user(g, node.output)
    if add is not None and add.op == "add" and add.attrs["activation"] == "none" and add.output.type == out:
        other = add.inputs[1] if add.inputs[0] is node.output else add.inputs[0]
        c = const(g, other) if is_float(other.type) else None
        vec = None if c is None else channel_vector(c, out.shape, out.rank - 1)
        if vec is not None:
            return _to_fc(g, add, node.inputs[0], b.T, vec, out.rank - 1, [node.inputs[1], other], node)
    return _to_fc(g, node, node.inputs[0], b.T, None, out.rank - 1, [node.inputs[1]])


def _to_fc(g: Graph, node: Node, x: Value, w: np.ndarray, bias: np.ndarray | None, axis: int,
           old: Sequence[Value | None], absorbed: Node | None = None) -> bool:
    """Replace `node` by fully_connected(x, w, bias); `absorbed` (the matmul under an add) goes too."""
    dtype = x.type.dtype
    wv = const_before(g, np.ascontiguousarray(w), node, f"{node.name}.w", dtype)
    bv = None if bias is None else const_before(g, bias, node, f"{node.name}.b", dtype)
    if try_rebuild(g, node, [x, wv, bv], {"axis": axis}, op="fully_connected") is None:
        return False
    if absorbed is not None:
        g.erase(absorbed)
    for o, heir in zip(old, (wv, bv), strict=False):
        if heir is not None:
            retire_const(g, o, heir)
    return True


def flatten_into_fc(g: Graph, node: Node) -> bool:
    """fully_connected(flatten(x, axis=1)) -> fully_connected(x): it flattens from axis 1 itself."""
    if node.op != "fully_connected" or node.attrs["axis"] != 1:
        return False
    f = node.inputs[0].producer
    if f is None or f.op not in ("flatten", "reshape"):
        return False
    x = f.inputs[0].type
    if x.rank < 2 or x.quant is not None or node.inputs[0].type.shape != (x.shape[0], x.size // max(x.shape[0], 1)):
        return False
    node.set_input(0, f.inputs[0])
    g.reinfer(node)
    return True


CANONICAL_RULES = (drop_identity, fold_shape, eltwise_to_binary, sub_div_by_const, gemm_to_fc, matmul_to_fc,
                   flatten_into_fc)


@register_pass("canonicalize")
def canonicalize(graph: Graph) -> Graph:
    """Apply the canonical rules to a fixed point, then drop what they left unused."""
    run_rules(graph, CANONICAL_RULES)
    remove_dead(graph)
    return graph
