"""Approximate conv and fully_connected kernels driven by one layer's KnobSettings.

conv: SFMA masks first (they depend only on the input maps), then SDSS's sampled outputs, each
evaluated with SPET, then SDSS's interpolation and evaluation of the rest (again with SPET), as the
seed combines them (section 2.2.4). fully_connected: SPET only (SDSS and SFMA are spatial).
Supported: float NCHW (or a layout the reference converts), group 1, no fused residual or PReLU
slope; SPET needs a ReLU or ReLU6 epilogue. `check_support` says why a layer is not supported.
"""

from __future__ import annotations

import numpy as np

from ....errors import LpdcUnsupportedError
from ....ir import Node, dtypes
from ....ir.ops._shape import pads4, pair
from ..im2col import pad_nchw, windows
from ..layout import from_nchw, to_nchw
from .counters import LayerCounts
from .knobs import KnobSettings
from .neurons import SATURATING, DotLayer, evaluate, evaluate_all
from .sdss import interpolate, sampling_plan
from .sfma import sfma_plan

DOT_OPS = ("conv", "fully_connected")


def check_support(node: Node, knobs: KnobSettings) -> None:
    """Raise LpdcUnsupportedError naming the layer when `knobs` cannot drive it."""
    where = f"layer '{node.name}' ({node.op})"
    if node.op not in DOT_OPS:
        raise LpdcUnsupportedError(f"effort knobs apply to {' and '.join(DOT_OPS)} only", where=where)
    if node.op == "fully_connected" and (knobs.sdss or knobs.sfma):
        raise LpdcUnsupportedError("SDSS and SFMA apply to conv layers only", where=where)
    if node.op == "conv" and node.attrs["group"] != 1:
        raise LpdcUnsupportedError(f"group {node.attrs['group']} (only group 1 is supported)", where=where)
    extras = node.inputs[3:]
    if any(v is not None for v in extras):
        raise LpdcUnsupportedError("a fused residual or PReLU slope is not supported", where=where)
    for v in list(node.inputs[:2]) + [node.outputs[0]]:
        if dtypes.to_numpy(v.type.dtype).kind != "f" or v.type.quant is not None:
            raise LpdcUnsupportedError(f"%{v.name} is {v.type.dtype} (floating point only)", where=where)
    act = node.attrs["activation"]
    if act == "prelu":
        raise LpdcUnsupportedError("a PReLU epilogue is not supported", where=where)
    if knobs.spet and act not in SATURATING:
        raise LpdcUnsupportedError(f"SPET needs a saturating epilogue ({', '.join(SATURATING)}), not {act!r}",
                                   where=where)


def _dot_layer(node: Node, cols: np.ndarray, w: np.ndarray, bias: np.ndarray | None, per_image: int) -> DotLayer:
    a = node.attrs
    b = np.zeros(w.shape[0], cols.dtype) if bias is None else bias.astype(cols.dtype, copy=False)
    return DotLayer(cols, w.astype(cols.dtype, copy=False), b, per_image, a["activation"], a["act_alpha"],
                    a["act_beta"])


def conv_operands(node: Node, ins: list) -> tuple[np.ndarray, DotLayer, tuple[int, int]]:
    """A conv's input as NCHW in the accumulator type, its neurons as a DotLayer, its output H, W."""
    a = node.attrs
    layout = node.inputs[0].type.effective_layout
    acc = dtypes.to_numpy(node.outputs[0].type.dtype)
    x = to_nchw(ins[0], layout).astype(acc, copy=False)
    w = ins[1]
    n, o, (kh, kw) = x.shape[0], w.shape[0], w.shape[2:]
    out_shape = node.outputs[0].type.shape
    oh, ow = out_shape[2:] if layout in (None, "NCHW") else out_shape[1:3]
    p, k = oh * ow, w[0].size
    win = windows(pad_nchw(x, pads4(a["pad"])), kh, kw, pair(a["stride"], "stride"), pair(a["dilation"], "dilation"),
                  (oh, ow))  # (N, C, kh, kw, OH, OW) -> inputs (C, kh, kw) by rows (N, OH, OW)
    cols = np.ascontiguousarray(win.transpose(1, 2, 3, 0, 4, 5)).reshape(k, n * p)
    layer = _dot_layer(node, cols, w.reshape(o, k), ins[2] if len(ins) > 2 else None, p)
    return x, layer, (oh, ow)


def fc_operands(node: Node, ins: list) -> DotLayer:
    """A fully_connected layer's neurons as a DotLayer (one row per image)."""
    axis = node.attrs["axis"] % max(ins[0].ndim, 1)
    acc = dtypes.to_numpy(node.outputs[0].type.dtype)
    batch = int(np.prod(ins[0].shape[:axis], dtype=np.int64))
    x2 = np.ascontiguousarray(ins[0].reshape(batch, -1).astype(acc, copy=False).T)
    return _dot_layer(node, x2, ins[1], ins[2] if len(ins) > 2 else None, 1)


def approx_conv(node: Node, ins: list, knobs: KnobSettings, counts: LayerCounts) -> np.ndarray:
    x, layer, (oh, ow) = conv_operands(node, ins)
    w = ins[1]
    n, o, p, k = x.shape[0], w.shape[0], oh * ow, w[0].size
    acc = x.dtype
    if knobs.sfma:
        layer.sfma = sfma_plan(x, w.astype(acc, copy=False), layer.cols, knobs, counts)
    if not knobs.sdss:
        out = evaluate_all(layer, knobs, counts).reshape(n, p, o).transpose(0, 2, 1)
        counts.neurons += out.size
        return from_nchw(np.ascontiguousarray(out).reshape(n, o, oh, ow), node.inputs[0].type.effective_layout)
    out = np.empty((n, o, p), acc)
    plan = sampling_plan(oh, ow, knobs.sdss_period)
    rows = np.repeat((np.arange(n)[:, None] * p + plan.sampled[None, :]).ravel(), o)
    outs = np.tile(np.arange(o), len(rows) // o)
    out[rows // p, outs, rows % p] = evaluate(layer, rows, outs, knobs, counts)
    if len(plan.others):
        todo = interpolate(out, plan, knobs, counts)
        img, ch, j = np.nonzero(todo)
        pos = plan.others[j]
        out[img, ch, pos] = evaluate(layer, img * p + pos, ch, knobs, counts)
        skipped = todo.size - len(img)
        counts.skipped_sdss += skipped * k
        counts.dense_macs += skipped * k
    counts.neurons += out.size
    return from_nchw(out.reshape(n, o, oh, ow), node.inputs[0].type.effective_layout)


def approx_fc(node: Node, ins: list, knobs: KnobSettings, counts: LayerCounts) -> np.ndarray:
    layer = fc_operands(node, ins)
    y = evaluate_all(layer, knobs, counts)
    counts.neurons += y.size
    return y.reshape(node.outputs[0].type.shape)
