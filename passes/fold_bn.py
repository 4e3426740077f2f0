"""fold-bn: fold batch-norm and other per-channel affine ops into the preceding weighted layer.

Before:  %c = conv(%x, %w, %b) : f32[1,16,8,8]
         %y = batch_norm(%c, %s, %beta, %mean, %var) {eps=1e-05} : f32[1,16,8,8]
After:   %y = conv(%x, %w', %b') : f32[1,16,8,8]      (loc("c"): the layer keeps its name)

Folded consumers of a conv / conv_transpose / fully_connected output P:
    batch_norm(P, s, beta, mean, var)   k = s / sqrt(var + eps),  c = beta - mean * k
    scale(P, s, [t])  (Caffe)           k = s,                    c = t (or 0)
    bias(P, t)        (Caffe)           k = 1,                    c = t
    mul(P, C) / mul(C, P)               k = C,                    c = 0
    add(P, C) / add(C, P)               k = 1,                    c = C
Formula (per output channel o):  W'[o] = W[o] * k[o],  b'[o] = b[o] * k[o] + c[o]
    which for batch norm is  W' = W * s / sqrt(var + eps),  b' = (b - mean) * s / sqrt(var + eps) + beta.
Why it is safe: every consumer above computes P * k + c with k and c constant per output channel,
and output channel o of P is linear in weight slice o plus bias o:
    conv            slice W[o]                      (any group/dilation: row o belongs to channel o)
    fully_connected row W[o]
    conv_transpose  W[g*Cin/G:(g+1)*Cin/G, j] for o = g*(Cout/G) + j
Preconditions: P's output is read only by the consumer and is not a graph output (otherwise the
other readers would see the folded values); P has no activation yet (act(z)*k != act(z*k)) and,
when k != 1, no residual (the residual would be scaled too); weights, bias and the consumer's
parameters are constant; float unquantized types; k and c vary only along P's channel axis;
the folded weights are finite (a zero variance with eps = 0 is left alone).
"""

from __future__ import annotations

import logging

import numpy as np

from ..ir import Graph, Node
from ..ir.ops.norm import channel_axis as bn_channel_axis
from .manager import register_pass
from .pattern import caffe_placed, channel_axis, channel_vector, const, input_at, is_float, match_chain
from .rewrite import forward, remove_dead, replace_consts, run_rules

log = logging.getLogger(__name__)
Affine = tuple[np.ndarray | None, np.ndarray]  # (k per channel or None for 1, c per channel)


HOSTS = ("conv", "conv_transpose", "fully_connected")
FOLDABLE = ("batch_norm", "scale", "bias", "mul", "add")


def _foldable(g: Graph, p: Node, node: Node) -> bool:
    """Whether `node` (already known to be the only reader of P's output) may fold into P."""
    if p.attrs["activation"] != "none" or not is_float(p.output.type) or node.output.type != p.output.type:
        return False
    params = [v for v in p.inputs[1:3] if v is not None]
    return all(const(g, v) is not None and is_float(v.type) for v in params)


def _affine(g: Graph, node: Node, p: Node) -> Affine | None:
    """(k, c) such that node(P) = P * k + c per output channel of P, or None."""
    shape, axis = p.output.type.shape, channel_axis(p)
    assert axis is not None
    if node.op in ("mul", "add"):
        return _binary_affine(g, node, p, shape, axis)
    params = [const(g, v) for v in node.inputs[1:] if v is not None]
    if any(a is None for a in params):
        return None
    f64 = [a.astype(np.float64) for a in params]
    if node.op == "batch_norm":
        if bn_channel_axis(p.output.type) != axis:
            return None
        s, beta, mean, var = (a.reshape(-1) for a in f64)
        with np.errstate(all="ignore"):
            k = s / np.sqrt(var + node.attrs["eps"])
        return k, beta - mean * k
    if node.op in ("scale", "bias"):
        placed = [caffe_placed(a.reshape(f64[0].shape), len(shape), node.attrs["axis"]) for a in f64]
        vecs = [None if a is None else channel_vector(a, shape, axis) for a in placed]
        if any(v is None for v in vecs):
            return None
        if node.op == "bias":
            return None, vecs[0]
        return vecs[0], vecs[1] if len(vecs) > 1 else np.zeros(shape[axis])
    return None


def _binary_affine(g: Graph, node: Node, p: Node, shape: tuple[int, ...], axis: int) -> Affine | None:
    """mul/add of P by a constant that varies only along P's channel axis."""
    other = node.inputs[1] if node.inputs[0] is p.output else node.inputs[0]
    c = const(g, other)
    if c is None or (node.op == "add" and node.attrs["activation"] != "none") or not is_float(other.type):
        return None
    vec = channel_vector(c.astype(np.float64), shape, axis)
    if vec is None:
        return None
    return (vec, np.zeros(shape[axis])) if node.op == "mul" else (None, vec)


def scale_out_channels(p: Node, w: np.ndarray, k: np.ndarray) -> np.ndarray:
    """W with every weight of output channel o multiplied by k[o] (see the module docstring)."""
    if p.op == "conv_transpose":
        group = p.attrs["group"]
        cin, og = w.shape[0], w.shape[1]
        return (w.reshape(group, cin // group, og, *w.shape[2:]) * k.reshape(group, 1, og, 1, 1)).reshape(w.shape)
    return w * k.reshape((-1,) + (1,) * (w.ndim - 1))


def fold_into_producer(g: Graph, p: Node) -> bool:
    """The rule: fold the bn, scale, bias, mul or add by a constant reading P into P."""
    chain = match_chain(g, p, HOSTS, FOLDABLE)
    node = chain[1] if chain else None
    affine = _affine(g, node, p) if node is not None and _foldable(g, p, node) else None
    if node is None or affine is None:
        return False
    k, c = affine
    if k is not None and input_at(p, 3) is not None:
        return False
    w = const(g, p.inputs[1]).astype(np.float64)
    b = const(g, input_at(p, 2))
    b = np.zeros(c.shape) if b is None else b.astype(np.float64).reshape(-1)
    with np.errstate(all="ignore"):  # non-finite results are refused just below
        data = {2: b * (1.0 if k is None else k) + c}
        if k is not None:
            data[1] = scale_out_channels(p, w, k)
    if input_at(p, 2) is None and not data[2].any():
        del data[2]  # a pure scaling of a bias-free layer needs no bias
    if not all(np.isfinite(a).all() for a in data.values()):
        log.info("fold-bn: not folding %s into %s: the folded weights would not be finite", node.name, p.name)
        return False
    p = replace_consts(g, p, data, names={2: f"{p.name}.b"})
    return forward(g, node, p.output)


@register_pass("fold-bn")
def fold_bn(graph: Graph) -> Graph:
    """Fold per-channel affine consumers into conv/conv_transpose/fully_connected, to a fixed point."""
    n = run_rules(graph, [fold_into_producer])
    remove_dead(graph)
    log.debug("fold-bn: %d folds", n)
    return graph
