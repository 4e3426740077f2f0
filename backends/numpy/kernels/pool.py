"""Reference pooling with Caffe/ONNX ceil mode, dilation and both average-pool divisors."""

from __future__ import annotations

import numpy as np

from ....ir.ops._shape import pads4, pair
from ..im2col import windows
from ..layout import from_nchw, to_nchw
from . import kernel


def _pool(node, x: np.ndarray, kind: str) -> np.ndarray:
    a = node.attrs
    (kh, kw), (sh, sw), (dh, dw) = (
        pair(a["kernel"], "kernel"),
        pair(a["stride"], "stride"),
        pair(a["dilation"], "dilation"),
    )
    pt, pl, pb, pr = pads4(a["pad"])
    layout = node.inputs[0].type.effective_layout
    out_t = node.outputs[0].type
    ho, wo = (out_t.shape[2], out_t.shape[3]) if layout == "NCHW" else (out_t.shape[1], out_t.shape[2])
    n, c, h, w = x.shape
    # Extra bottom/right room for ceil-mode windows that run past the padded input.
    eb = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + pt + pb))
    er = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + pl + pr))
    full = ((0, 0), (0, 0), (pt, pb + eb), (pl, pr + er))
    if kind == "max":
        low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        xp = np.pad(x, full, constant_values=low)
        return _reduce_windows(xp, kh, kw, (sh, sw), (dh, dw), (ho, wo), np.maximum)
    acc = np.float64 if x.dtype.kind != "f" else x.dtype
    xp = np.pad(x.astype(acc, copy=False), full)
    total = _reduce_windows(xp, kh, kw, (sh, sw), (dh, dw), (ho, wo), np.add)
    # Divisor: the window clipped to the padded input (include pad) or to the real input.
    mask = np.zeros((1, 1, h + pt + pb + eb, w + pl + pr + er), acc)
    if a["count_include_pad"]:
        mask[:, :, : h + pt + pb, : w + pl + pr] = 1
    else:
        mask[:, :, pt : pt + h, pl : pl + w] = 1
    count = windows(mask, kh, kw, (sh, sw), (dh, dw), (ho, wo)).sum(axis=(2, 3))
    return (total / np.maximum(count, 1)).astype(x.dtype)


def _reduce_windows(xp: np.ndarray, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int],
                    out_hw: tuple[int, int], op: np.ufunc) -> np.ndarray:
    """op-reduce every window, one kernel offset at a time (row-major over the window): kh*kw
    whole-array ufunc calls on strided slices, ~50x faster than reducing a 6-D window view."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    acc = None
    for i in range(kh):
        for j in range(kw):
            v = xp[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw]
            acc = v.copy() if acc is None else op(acc, v, out=acc)
    assert acc is not None
    return acc


@kernel("max_pool", "avg_pool")
def _window_pool(node, ins, g):
    layout = node.inputs[0].type.effective_layout
    y = _pool(node, to_nchw(ins[0], layout), "max" if node.op == "max_pool" else "avg")
    return [from_nchw(y, layout)]


@kernel("global_avg_pool", "global_max_pool")
def _global_pool(node, ins, g):
    layout = node.inputs[0].type.effective_layout
    x = to_nchw(ins[0], layout)
    if node.op == "global_max_pool":
        y = x.max(axis=(2, 3), keepdims=True)
    else:
        y = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64 if x.dtype.kind != "f" else x.dtype).astype(x.dtype)
    return [from_nchw(y, layout)]
