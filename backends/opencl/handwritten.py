"""Hand-written OpenCL C kernels for nodes TVM cannot express as one kernel.

build.plan_gpu asks `hand_kernel(node, g)` when the TVM lowering refuses a node. Covered:
softmax/log_softmax along any axis, and the data movement ops (transpose, reshape, flatten,
squeeze, unsqueeze, slice) as one strided gather each. The subtle part is the storage layout:
a 4-D activation (layout None or "NCHW", even a transpose's 4-D output) lives NHWC on the
device, everything else in its logical shape; every index map here goes from the output's
stored position to its logical coordinates and from the input's logical coordinates to its
stored offset. Anything else returns None and the node runs on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import LpdcError
from ...ir import Graph, Node, Value
from ...ir.ops._shape import norm_axis
from ...ir.ops.tensor import slice_bounds
from ..tvm.lower import is_act4, nhwc_shape
from .handwritten_sources import Dims, gather_source, softmax_source

_MAX_ELEMS = 2**31 - 1  # kernels index with int
_RESHAPES = ("reshape", "flatten", "squeeze", "unsqueeze")


@dataclass(frozen=True)
class HandKernel:
    """A kernel called as (inputs..., consts..., out) over `global_size` work-items."""

    source: str
    name: str
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None
    inputs: list[Value]
    consts: list[np.ndarray]


def hand_kernel(node: Node, g: Graph) -> HandKernel | None:
    """The node's hand-written kernel, or None when this module has none for it."""
    if len(node.outputs) != 1 or not node.inputs or node.inputs[0] is None:
        return None
    x, y = node.inputs[0], node.outputs[0]
    if x.type.dtype != "f32" or y.type.dtype != "f32" or max(x.type.size, y.type.size) > _MAX_ELEMS:
        return None
    try:
        if node.op in ("softmax", "log_softmax"):
            return _softmax(node, x, y)
        if node.op == "transpose":
            return _transpose(node, x, y)
        if node.op == "slice":
            return _slice(node, x, y)
        if node.op in _RESHAPES:
            return _reshape(x, y)
    except LpdcError:  # attributes the op's own checks reject: leave the node to the reference
        return None
    return None


# ---- layout ------------------------------------------------------------------------------------
def _shape(v: Value) -> tuple[int, ...]:
    return tuple(int(d) for d in v.type.shape)


def _stored_axes(v: Value) -> tuple[int, ...]:
    """The logical axis held by each stored axis (NHWC storage of an NCHW activation)."""
    return (0, 2, 3, 1) if is_act4(v) else tuple(range(v.type.rank))


def _c_strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        out[i], acc = acc, acc * shape[i]
    return out


def _stored_strides(v: Value) -> list[int]:
    """Element stride of each LOGICAL axis of `v` in its device storage."""
    out = [0] * v.type.rank
    for a, s in zip(_stored_axes(v), _c_strides(nhwc_shape(v)), strict=True):
        out[a] = s
    return out


def _out_dims(y: Value, logical_strides: list[int]) -> Dims:
    """(extent, stride) per stored axis of `y`, given a stride for each of its logical axes."""
    shape = _shape(y)
    return [(shape[a], logical_strides[a]) for a in _stored_axes(y)]


def _gather(y: Value, x: Value, strides: list[int], base: int, in_dims: Dims | None) -> HandKernel:
    total = y.type.size
    src, name = gather_source(total, _out_dims(y, strides), base, in_dims)
    return HandKernel(src, name, (max(total, 1),), None, [x], [])


# ---- ops ---------------------------------------------------------------------------------------
def _softmax(node: Node, x: Value, y: Value) -> HandKernel | None:
    if x.type.rank == 0 or _shape(x) != _shape(y) or is_act4(x) != is_act4(y):
        return None
    axis = _stored_axes(x).index(norm_axis(node.attrs["axis"], x.type.rank))
    stored = nhwc_shape(x)
    k, inner = stored[axis], int(np.prod(stored[axis + 1:], dtype=np.int64))
    rows = int(np.prod(stored[:axis], dtype=np.int64)) * inner if k else 0
    src, name = softmax_source(rows, k, inner, node.op == "log_softmax")
    return HandKernel(src, name, (max(rows, 1),), None, [x], [])


def _transpose(node: Node, x: Value, y: Value) -> HandKernel | None:
    """y[o] = x[o permuted back]: logical axis i of y walks x's logical axis perm[i]."""
    perm = list(node.attrs["perm"]) or list(range(x.type.rank))[::-1]
    if sorted(perm) != list(range(x.type.rank)) or _shape(y) != tuple(_shape(x)[p] for p in perm):
        return None
    sx = _stored_strides(x)
    return _gather(y, x, [sx[p] for p in perm], 0, None)


def _slice(node: Node, x: Value, y: Value) -> HandKernel | None:
    """Each sliced axis starts at `start` and walks `step` (possibly negative) elements."""
    a = node.attrs
    starts, ends = list(a["starts"]), list(a["ends"])
    axes = list(a["axes"]) or list(range(len(starts)))
    steps = list(a["steps"]) or [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        return None
    shape, sx = _shape(x), _stored_strides(x)
    strides, out_shape, base = list(sx), list(shape), 0
    for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
        ax = norm_axis(ax, x.type.rank)
        r = slice_bounds(shape[ax], st, en, sp)
        out_shape[ax], strides[ax] = len(r), r.step * sx[ax]
        base += (r.start if len(r) else 0) * sx[ax]
    if tuple(out_shape) != _shape(y):
        return None
    return _gather(y, x, strides, base, None)


def _reshape(x: Value, y: Value) -> HandKernel | None:
    """Same logical (C-order) element order: y's coordinates give a flat index that is
    unravelled over x's logical shape; both steps vanish when the value is not NHWC-stored."""
    if x.type.size != y.type.size:
        return None
    in_dims = None if not is_act4(x) else list(zip(_shape(x), _stored_strides(x), strict=True))
    return _gather(y, x, _c_strides(_shape(y)), 0, in_dims)
