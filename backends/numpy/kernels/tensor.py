"""Reference data movement, shape arithmetic and reductions."""

from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ....ir.ops.tensor import resolve_reshape
from . import kernel


@kernel("const")
def _const(node, ins, g):
    return [g.params[node.attrs["param"]]]


@kernel("identity", "dropout")
def _identity(node, ins, g):
    return [ins[0]]


@kernel("concat")
def _concat(node, ins, g):
    return [np.concatenate(ins, axis=node.attrs["axis"])]


@kernel("split")
def _split(node, ins, g):
    cuts = np.cumsum(node.attrs["sizes"])[:-1]
    return [np.ascontiguousarray(p) for p in np.split(ins[0], cuts, axis=node.attrs["axis"])]


@kernel("slice")
def _slice(node, ins, g):
    a = node.attrs
    x = ins[0]
    index = [slice(None)] * x.ndim
    axes = a["axes"] or list(range(len(a["starts"])))
    steps = a["steps"] or [1] * len(axes)
    for st, en, ax, sp in zip(a["starts"], a["ends"], axes, steps, strict=True):
        index[ax] = slice(st, en, sp)
    return [np.ascontiguousarray(x[tuple(index)])]


@kernel("flatten", "reshape", "squeeze", "unsqueeze")
def _reshape(node, ins, g):
    return [ins[0].reshape(node.outputs[0].type.shape)]


@kernel("transpose")
def _transpose(node, ins, g):
    perm = node.attrs["perm"] or None
    return [np.asarray(np.transpose(ins[0], perm), order="C")]


@kernel("pad")
def _pad(node, ins, g):
    x, pads, mode = ins[0], node.attrs["pads"], node.attrs["mode"]
    r = x.ndim
    crop = tuple(slice(max(0, -pads[i]), x.shape[i] - max(0, -pads[i + r])) for i in range(r))
    x = x[crop]
    width = [(max(0, pads[i]), max(0, pads[i + r])) for i in range(r)]
    if mode == "constant":
        return [np.pad(x, width, constant_values=np.asarray(node.attrs["value"]).astype(x.dtype))]
    return [np.pad(x, width, mode=mode)]  # reflect, edge and wrap mean the same in NumPy and ONNX


@kernel("shape")
def _shape(node, ins, g):
    return [np.asarray(node.inputs[0].type.shape[slice(node.attrs["start"], node.attrs["end"])], np.int64)]


@kernel("gather")
def _gather(node, ins, g):
    axis = node.attrs["axis"] % ins[0].ndim
    idx = ins[1].astype(np.int64)
    idx = np.where(idx < 0, idx + ins[0].shape[axis], idx)
    return [np.take(ins[0], idx, axis=axis)]


@kernel("cast")
def _cast(node, ins, g):
    return [ins[0].astype(dtypes.to_numpy(node.attrs["to"]))]


@kernel("reduce_mean", "reduce_sum", "reduce_max", "reduce_min")
def _reduce(node, ins, g):
    x = ins[0]
    axes = tuple(a % x.ndim for a in node.attrs["axes"]) or None
    fn = {"reduce_mean": np.mean, "reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min}[node.op]
    return [np.asarray(fn(x, axis=axes, keepdims=node.attrs["keepdims"])).astype(x.dtype, copy=False)]


__all__ = ["resolve_reshape"]
