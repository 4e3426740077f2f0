"""Reference batch_norm, scale, bias, lrn, normalize and softmax."""

from __future__ import annotations

import numpy as np

from ....ir.ops.norm import channel_axis
from . import kernel


def _per_channel(p: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """Lay a parameter over x's axes starting at `axis` (Caffe's scale/bias broadcasting)."""
    p = p.reshape(-1) if p.ndim == 1 else p
    shape = [1] * x.ndim
    if p.ndim == 1:
        shape[axis] = p.size
    else:
        shape[axis:axis + p.ndim] = p.shape
    return p.reshape(shape).astype(x.dtype, copy=False)


@kernel("batch_norm")
def _batch_norm(node, ins, g):
    x, scale, bias, mean, var = ins
    ax = channel_axis(node.inputs[0].type)
    inv = scale / np.sqrt(var.astype(np.float64) + node.attrs["eps"])
    y = (x - _per_channel(mean, x, ax)) * _per_channel(inv.astype(x.dtype), x, ax) + _per_channel(bias, x, ax)
    return [y.astype(x.dtype, copy=False)]


@kernel("scale")
def _scale(node, ins, g):
    x = ins[0]
    ax = node.attrs["axis"] % x.ndim
    y = x * _per_channel(ins[1], x, ax)
    if len(ins) > 2 and ins[2] is not None:
        y = y + _per_channel(ins[2].reshape(ins[1].shape), x, ax)
    return [y]


@kernel("bias")
def _bias(node, ins, g):
    x = ins[0]
    return [x + _per_channel(ins[1], x, node.attrs["axis"] % x.ndim)]


@kernel("lrn")
def _lrn(node, ins, g):
    a = node.attrs
    x = ins[0]
    ax = channel_axis(node.inputs[0].type)
    xc = np.moveaxis(x, ax, 1).astype(np.float64)
    sq = xc * xc
    size = a["size"]
    if a["region"] == "across":
        c = sq.shape[1]
        padded = np.pad(sq, ((0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)))
        csum = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)
        window = csum[:, size:size + c] - csum[:, :c]
        norm = a["bias"] + a["alpha"] / size * window
    else:
        half = (size - 1) // 2
        padded = np.pad(sq, ((0, 0), (0, 0), (half, half), (half, half)))
        view = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(2, 3))
        norm = a["bias"] + a["alpha"] / (size * size) * view.sum(axis=(-2, -1))
    y = xc / norm ** a["beta"]
    return [np.moveaxis(y, 1, ax).astype(x.dtype)]


@kernel("normalize")
def _normalize(node, ins, g):
    x, s = ins
    a = node.attrs
    ax = channel_axis(node.inputs[0].type)
    xc = np.moveaxis(x, ax, 1).astype(np.float64)
    axes = (1, 2, 3) if a["across_spatial"] else (1,)
    norm = np.sqrt((xc * xc).sum(axis=axes, keepdims=True) + a["eps"])
    scale = s.reshape(1, -1, 1, 1) if not a["channel_shared"] else s.reshape(1, 1, 1, 1)
    return [np.moveaxis(xc / norm * scale, 1, ax).astype(x.dtype)]


@kernel("softmax", "log_softmax")
def _softmax(node, ins, g):
    x = ins[0]
    axis = node.attrs["axis"]
    z = x - x.max(axis=axis, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(z)
    s = e.sum(axis=axis, keepdims=True)
    return [(z - np.log(s)).astype(x.dtype) if node.op == "log_softmax" else (e / s).astype(x.dtype)]
