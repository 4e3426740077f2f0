"""Reference conv, conv_transpose, fully_connected, gemm and matmul, with the fused epilogue."""

from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ....ir.ops._shape import pads4, pair
from ..im2col import conv2d_im2col
from ..layout import from_nchw, to_nchw
from . import kernel
from .activation import apply_activation


def zero_points(node, index: int, arr: np.ndarray) -> np.ndarray:
    """Subtract the zero point of a quantized input so integer arithmetic sees true values."""
    v = node.inputs[index]
    if v is None or v.type.quant is None or not any(v.type.quant.zero_point):
        return arr
    q = v.type.quant
    zp = np.asarray(q.zero_point, np.int32)
    if q.axis is not None:
        shape = [1] * arr.ndim
        shape[q.axis] = -1
        zp = zp.reshape(shape)
    return arr.astype(np.int32) - zp


def acc_dtype(node) -> np.dtype:
    return dtypes.to_numpy(node.outputs[0].type.dtype)


def epilogue(node, y: np.ndarray, ins: list, channel_axis: int) -> np.ndarray:
    """y + bias (per channel) + residual, then the activation."""
    bias = ins[2] if len(ins) > 2 else None
    if bias is not None:
        shape = [1] * y.ndim
        shape[channel_axis] = -1
        y = y + bias.reshape(shape).astype(y.dtype, copy=False)
    if len(ins) > 3 and ins[3] is not None:
        y = y + ins[3].astype(y.dtype, copy=False)
    a = node.attrs
    slope = ins[4] if len(ins) > 4 else (ins[2] if node.op == "add" and len(ins) > 2 else None)
    return apply_activation(y, a["activation"], a["act_alpha"], a["act_beta"], slope)


@kernel("conv")
def _conv(node, ins, g):
    a = node.attrs
    if a["primitive"]:  # a catalog primitive chosen by primitive selection ("" = this im2col)
        from ..primitives.dispatch import run_conv

        return [run_conv(node, ins, epilogue)]
    layout = node.inputs[0].type.effective_layout
    x = zero_points(node, 0, to_nchw(ins[0], layout))
    w = zero_points(node, 1, ins[1])
    y = conv2d_im2col(x, w, pair(a["stride"], "stride"), pads4(a["pad"]), pair(a["dilation"], "dilation"),
                      a["group"], acc_dtype(node))
    y = epilogue(node, y, _nchw_extras(ins, layout), 1)
    return [from_nchw(y, layout)]


def _nchw_extras(ins: list, layout: str | None) -> list:
    """Inputs for the epilogue with the residual moved to NCHW."""
    extras = list(ins)
    if len(extras) > 3 and extras[3] is not None:
        extras[3] = to_nchw(extras[3], layout)
    return extras


@kernel("conv_transpose")
def _conv_transpose(node, ins, g):
    a = node.attrs
    layout = node.inputs[0].type.effective_layout
    x, w = to_nchw(ins[0], layout), ins[1]
    (sh, sw), (dh, dw) = pair(a["stride"], "stride"), pair(a["dilation"], "dilation")
    pt, pl, pb, pr = pads4(a["pad"])
    n, c, h, wd = x.shape
    cin, og, kh, kw = w.shape
    group = a["group"]
    acc = acc_dtype(node)
    # Scatter formulation: each input pixel adds its weighted kernel into the full output.
    full_h = (h - 1) * sh + dh * (kh - 1) + 1
    full_w = (wd - 1) * sw + dw * (kw - 1) + 1
    oh, ow = node.outputs[0].type.shape[2:] if layout == "NCHW" else node.outputs[0].type.shape[1:3]
    full = np.zeros((n, og * group, max(full_h, oh + pt), max(full_w, ow + pl)), acc)
    xg = x.astype(acc, copy=False).reshape(n, group, c // group, h * wd)
    wg = w.astype(acc, copy=False).reshape(group, c // group, og * kh * kw)
    cols = np.matmul(wg.transpose(0, 2, 1)[None], xg).reshape(n, group, og, kh, kw, h, wd)
    for i in range(kh):
        for j in range(kw):
            full[:, :, i * dh:i * dh + (h - 1) * sh + 1:sh, j * dw:j * dw + (wd - 1) * sw + 1:sw] += (
                cols[:, :, :, i, j].reshape(n, group * og, h, wd))
    y = np.ascontiguousarray(full[:, :, pt:pt + oh, pl:pl + ow])
    if y.shape[2:] != (oh, ow):  # output_padding reaching past the scattered area stays zero
        y = np.pad(y, ((0, 0), (0, 0), (0, oh - y.shape[2]), (0, ow - y.shape[3])))
    return [from_nchw(epilogue(node, y, _nchw_extras(ins, layout), 1), layout)]


@kernel("fully_connected")
def _fc(node, ins, g):
    axis = node.attrs["axis"] % max(ins[0].ndim, 1)
    x = zero_points(node, 0, ins[0])
    w = zero_points(node, 1, ins[1])
    acc = acc_dtype(node)
    x2 = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1).astype(acc, copy=False)
    if node.attrs["primitive"]:
        from ..primitives.dispatch import run_fc

        y = run_fc(node, x2, w).reshape(x.shape[:axis] + (w.shape[0],))
    else:
        y = (x2 @ w.astype(acc, copy=False).T).reshape(x.shape[:axis] + (w.shape[0],))
    return [epilogue(node, y, ins, y.ndim - 1)]


@kernel("gemm")
def _gemm(node, ins, g):
    a = node.attrs
    acc = acc_dtype(node)
    A = ins[0].T if a["trans_a"] else ins[0]
    B = ins[1].T if a["trans_b"] else ins[1]
    y = np.asarray(a["alpha"], acc) * (A.astype(acc, copy=False) @ B.astype(acc, copy=False))
    if len(ins) > 2 and ins[2] is not None:
        y = y + np.asarray(a["beta"], acc) * ins[2].astype(acc, copy=False)
    return [y.astype(acc, copy=False)]


@kernel("matmul")
def _matmul(node, ins, g):
    acc = acc_dtype(node)
    return [np.matmul(ins[0].astype(acc, copy=False), ins[1].astype(acc, copy=False))]
