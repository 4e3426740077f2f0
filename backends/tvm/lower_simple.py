"""TVM kernels for the light ops: pooling, global pooling, elementwise, concat, softmax, flatten.

All take 4-D activations as NHWC (see lower.py) and are scheduled by schedules/generic.py.
Window pooling follows the reference exactly: Caffe ceil-mode windows may run past the padded
input, and average pooling divides by a per-position count computed here with NumPy (the same
rule as backends/numpy/kernels/pool.py) and bound as a constant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import tvm
from tvm import te, topi

from ...errors import LpdcUnsupportedError
from ...ir import Graph, Node
from ...ir.ops._shape import pads4, pair
from .compute import activation

if TYPE_CHECKING:
    from .lower import Lowered


def _lowered(tensors: list[Any], args: list[Any], key: tuple) -> Lowered:
    from .lower import Lowered

    return Lowered(tensors, args, "generic", key)


def _shape_of(v: Any) -> tuple[int, ...]:
    from .lower import nhwc_shape

    return nhwc_shape(v)


def _window_pool(node: Node, g: Graph, vec: int) -> Lowered:
    from .lower import is_act4

    x = node.inputs[0]
    if not is_act4(x):
        raise LpdcUnsupportedError("pooling needs NCHW 4-D activations")
    a = node.attrs
    (kh, kw), (sh, sw), (dh, dw) = _window(a)
    pt, pl, pb, pr = pads4(a["pad"])
    n, c, h, w = x.type.shape
    ho, wo = node.output.type.shape[2:]
    eb = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))  # ceil-mode room
    er = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    is_max = node.op == "max_pool"
    xt = te.placeholder((n, h, w, c), name="x")
    low = tvm.tirx.const(-3.4e38 if is_max else 0.0, "float32")
    xp = te.compute((n, h + pt + pb + eb, w + pl + pr + er, c), lambda b, i, j, k: tvm.tirx.if_then_else(
        tvm.tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl), xt[b, i - pt, j - pl, k], low), name="pad")
    rh, rw = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kw), "rw")
    red = te.max if is_max else te.sum
    acc = te.compute((n, ho, wo, c),
                     lambda b, i, j, k: red(xp[b, i * sh + rh * dh, j * sw + rw * dw, k], axis=[rh, rw]), name="pool")
    key = (node.op, (n, h, w, c), (kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, eb, er, a["count_include_pad"]))
    if is_max:
        return _lowered([xt, acc], [x], key)
    inv = te.placeholder((ho, wo), name="inv_count")
    out = te.compute((n, ho, wo, c), lambda b, i, j, k: acc[b, i, j, k] * inv[i, j], name="out")
    return _lowered([xt, inv, out], [x, _inv_count(a, h, w, ho, wo, eb, er)], key)


def _window(a: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    return pair(a["kernel"], "kernel"), pair(a["stride"], "stride"), pair(a["dilation"], "dilation")


def _inv_count(a: dict[str, Any], h: int, w: int, ho: int, wo: int, eb: int, er: int) -> np.ndarray:
    """1 / (window size clipped to the padded input, or to the real input) per output position."""
    (kh, kw), (sh, sw), (dh, dw) = _window(a)
    pt, pl, pb, pr = pads4(a["pad"])
    mask = np.zeros((h + pt + pb + eb, w + pl + pr + er))
    if a["count_include_pad"]:
        mask[: h + pt + pb, : w + pl + pr] = 1
    else:
        mask[pt:pt + h, pl:pl + w] = 1
    count = np.zeros((ho, wo))
    for i in range(kh):
        for j in range(kw):
            count += mask[i * dh: i * dh + (ho - 1) * sh + 1: sh, j * dw: j * dw + (wo - 1) * sw + 1: sw]
    return (1.0 / np.maximum(count, 1)).astype(np.float32)


def _global_pool(node: Node, g: Graph, vec: int) -> Lowered:
    from .lower import is_act4

    x = node.inputs[0]
    if not is_act4(x):
        raise LpdcUnsupportedError("global pooling needs NCHW 4-D activations")
    n, c, h, w = x.type.shape
    xt = te.placeholder((n, h, w, c), name="x")
    rh, rw = te.reduce_axis((0, h), "rh"), te.reduce_axis((0, w), "rw")
    if node.op == "global_max_pool":
        out = te.compute((n, 1, 1, c), lambda b, i, j, k: te.max(xt[b, rh, rw, k], axis=[rh, rw]), name="pool")
    else:
        s = te.compute((n, 1, 1, c), lambda b, i, j, k: te.sum(xt[b, rh, rw, k], axis=[rh, rw]), name="pool")
        out = te.compute((n, 1, 1, c), lambda *i: s(*i) * tvm.tirx.const(1.0 / (h * w), "float32"), name="out")
    return _lowered([xt, out], [x], (node.op, (n, h, w, c)))


def _elementwise(node: Node, g: Graph, vec: int) -> Lowered:
    """Unary activations, and add/sub/mul/max/min of same-shaped inputs (add keeps its epilogue)."""
    ins = [v for v in node.inputs if v is not None]
    shape = _shape_of(ins[0])
    binary = node.op in _BINARY
    if binary and (len(ins) != 2 or _shape_of(ins[1]) != shape):
        raise LpdcUnsupportedError("broadcasting binary ops run on the NumPy kernel")
    if node.op == "add" and node.attrs.get("activation", "none") == "prelu":
        raise LpdcUnsupportedError("add with a prelu epilogue runs on the NumPy kernel")
    if node.op == "prelu" or len(node.outputs) != 1:
        raise LpdcUnsupportedError(f"{node.op} with these inputs/outputs runs on the NumPy kernel")
    ts = [te.placeholder(shape, name=f"x{i}") for i in range(len(ins))]
    a = node.attrs
    if binary:
        f = _BINARY[node.op]
        kind, alpha, beta = a.get("activation", "none"), a.get("act_alpha", 0.0), a.get("act_beta", 0.0)
        out = te.compute(shape, lambda *i: activation(f(ts[0](*i), ts[1](*i)), kind, alpha, beta), name="out")
    else:
        kind, alpha, beta = _unary_params(node)
        out = te.compute(shape, lambda *i: activation(ts[0](*i), kind, alpha, beta), name="out")
    key = (node.op, shape, tuple(sorted((k, str(v)) for k, v in a.items())))
    return _lowered([*ts, out], list(ins), key)


def _unary_params(node: Node) -> tuple[str, float, float]:
    a = node.attrs
    if node.op in ("leaky_relu", "elu"):
        return node.op, float(a["alpha"]), 0.0
    if node.op == "hard_sigmoid":
        return node.op, float(a["alpha"]), float(a["beta"])
    if node.op == "clip":
        return "clip", float(a["min"]), float(a["max"])
    if node.op in _COPY:  # inference-time identities
        return "none", 0.0, 0.0
    return node.op, 0.0, 0.0


def _concat(node: Node, g: Graph, vec: int) -> Lowered:
    from .lower import is_act4

    ins = list(node.inputs)
    axis = node.attrs["axis"] % node.output.type.rank
    if all(is_act4(v) for v in ins):
        axis = (0, 3, 1, 2)[axis]  # the logical NCHW axis in NHWC storage
    elif any(is_act4(v) for v in ins):
        raise LpdcUnsupportedError("concat of activations with plain tensors is not lowered")
    ts = [te.placeholder(_shape_of(v), name=f"x{i}") for i, v in enumerate(ins)]
    out = topi.concatenate(ts, axis=axis)
    return _lowered([*ts, out], ins, ("concat", tuple(_shape_of(v) for v in ins), axis))


def _slice(node: Node, g: Graph, vec: int) -> Lowered:
    """A strided window (4-D activations: the logical NCHW axes mapped onto NHWC storage)."""
    from ...ir.ops.tensor import slice_bounds
    from .lower import is_act4

    x, a = node.inputs[0], node.attrs
    rank = x.type.rank
    axes = [ax % rank for ax in (a["axes"] or range(len(a["starts"])))]
    steps = a["steps"] or [1] * len(axes)
    start, step = [0] * rank, [1] * rank
    for ax, st, en, sp in zip(axes, a["starts"], a["ends"], steps, strict=True):
        r = slice_bounds(x.type.shape[ax], st, en, sp)
        start[ax], step[ax] = (r.start if len(r) else 0), sp
    if is_act4(x) != is_act4(node.output):
        raise LpdcUnsupportedError("slice between an activation and a plain tensor is not lowered")
    if is_act4(x):
        perm = (0, 2, 3, 1)
        start, step = [start[p] for p in perm], [step[p] for p in perm]
    xt = te.placeholder(_shape_of(x), name="x")
    def at(*i: Any) -> Any:
        return xt(*(s0 + k * sp for s0, k, sp in zip(start, i, step, strict=True)))

    out = te.compute(_shape_of(node.output), at, name="out")
    return _lowered([xt, out], [x], ("slice", _shape_of(x), _shape_of(node.output), tuple(start), tuple(step)))


def _softmax(node: Node, g: Graph, vec: int) -> Lowered:
    x = node.inputs[0]
    if x.type.rank != 2 or node.attrs["axis"] % 2 != 1:
        raise LpdcUnsupportedError("softmax is lowered for matrices along the last axis")
    xt = te.placeholder(tuple(x.type.shape), name="x")
    out = topi.nn.softmax(xt, axis=1) if node.op == "softmax" else topi.nn.log_softmax(xt, axis=1)
    return _lowered([xt, out], [x], (node.op, tuple(x.type.shape)))


def _flatten(node: Node, g: Graph, vec: int) -> Lowered:
    """NHWC in, NCHW-ordered flat rows out (the index math does the transpose)."""
    from .lower import is_act4

    x = node.inputs[0]
    if not is_act4(x) or node.attrs["axis"] % 4 != 1:
        raise LpdcUnsupportedError("flatten is lowered for 4-D inputs from axis 1")
    n, c, h, w = x.type.shape
    xt = te.placeholder((n, h, w, c), name="x")
    out = te.compute((n, c * h * w), lambda b, j: xt[b, (j % (h * w)) // w, j % w, j // (h * w)], name="out")
    return _lowered([xt, out], [x], ("flatten", (n, h, w, c)))


def _lrn(node: Node, g: Graph, vec: int) -> Lowered:
    """Local response normalisation across channels: x / (bias + alpha/size * sum x^2)^beta."""
    from .lower import is_act4

    x, a = node.inputs[0], node.attrs
    if not is_act4(x) or a["region"] != "across":
        raise LpdcUnsupportedError("lrn is lowered across channels of NCHW activations only")
    n, c, h, w = x.type.shape
    size, lo = int(a["size"]), (int(a["size"]) - 1) // 2
    xt = te.placeholder((n, h, w, c), name="x")
    r = te.reduce_axis((0, size), "r")

    def sq(b: Any, i: Any, j: Any, k: Any) -> Any:
        ch = k + r - lo
        v = xt[b, i, j, tvm.te.max(tvm.te.min(ch, c - 1), 0)]
        return te.sum(tvm.tirx.if_then_else(tvm.tirx.all(ch >= 0, ch < c), v * v, tvm.tirx.const(0.0, "float32")),
                      axis=r)

    s = te.compute((n, h, w, c), sq, name="sqsum")
    f32 = lambda v: tvm.tirx.const(float(v), "float32")  # noqa: E731

    def scale(t: Any) -> Any:
        if a["beta"] == 0.75:  # the usual AlexNet/GoogLeNet value: t^-3/4 with vectorisable square roots
            r1 = tvm.tirx.sqrt(t)
            return f32(1.0) / (r1 * tvm.tirx.sqrt(r1))
        return f32(1.0) / tvm.tirx.pow(t, f32(a["beta"]))

    out = te.compute((n, h, w, c), lambda *i: xt(*i) * scale(f32(a["bias"]) + f32(a["alpha"] / size) * s(*i)),
                     name="out")
    return _lowered([xt, out], [x], ("lrn", (n, h, w, c), size, a["alpha"], a["beta"], a["bias"]))


def _batch_norm(node: Node, g: Graph, vec: int) -> Lowered:
    """Inference batch norm as y = x * a[c] + b[c] (a, b folded from the constants in float64)."""
    from .lower import is_act4

    x = node.inputs[0]
    consts = [g.const_data(v) for v in node.inputs[1:5]]
    if not is_act4(x) or any(c is None for c in consts):
        raise LpdcUnsupportedError("batch_norm is lowered for NCHW activations with constant statistics")
    scale, bias, mean, var = (np.asarray(c, np.float64).reshape(-1) for c in consts)
    a = scale / np.sqrt(var + node.attrs["eps"])
    b = bias - mean * a.astype(np.float32)
    shape = _shape_of(x)
    xt = te.placeholder(shape, name="x")
    at, bt = te.placeholder((shape[-1],), name="a"), te.placeholder((shape[-1],), name="b")
    out = te.compute(shape, lambda *i: xt(*i) * at[i[-1]] + bt[i[-1]], name="out")
    return _lowered([xt, at, bt, out], [x, a.astype(np.float32), b.astype(np.float32)], ("bn", shape))


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "max": lambda a, b: te.max(a, b), "min": lambda a, b: te.min(a, b),
}
_COPY = ("identity", "dropout")
_UNARY = (*_COPY, "relu", "relu6", "clip", "leaky_relu", "sigmoid", "tanh", "hard_sigmoid", "hard_swish", "elu")

SIMPLE: dict[str, Callable[[Node, Graph, int], Lowered]] = {
    "max_pool": _window_pool, "avg_pool": _window_pool,
    "global_avg_pool": _global_pool, "global_max_pool": _global_pool,
    "lrn": _lrn, "batch_norm": _batch_norm, "concat": _concat, "flatten": _flatten,
    "slice": _slice,
    "softmax": _softmax, "log_softmax": _softmax,
    **dict.fromkeys((*_BINARY, *_UNARY), _elementwise),
}
