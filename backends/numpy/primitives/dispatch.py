"""Running a conv or fully_connected node with the primitive named in its `primitive` attribute.

The reference kernels (backends/numpy/kernels/nn.py) call in here when the attribute is set; the
epilogue (bias, residual, activation) is applied in the primitive's output layout so no layout
round trip is needed.
"""

from __future__ import annotations

import math

import numpy as np

from ....errors import LpdcExecutionError
from ....ir import Node, dtypes
from ....ir.ops._shape import pads4, pair
from ....ir.ops.quant import layout_shape
from ....ir.types import is_blocked_layout
from .base import ConvSpec, FCSpec, Primitive, get_primitive, packed


def weight_density(w: np.ndarray) -> float:
    """Fraction of non-zero weights (cached per weight array)."""
    return packed(w, "density", lambda: np.asarray(np.count_nonzero(w) / max(w.size, 1)))[()]


def conv_spec(node: Node, w: np.ndarray | None = None) -> ConvSpec:
    """The logical NCHW geometry of a conv node (density from `w` when given)."""
    xt, wt = node.inputs[0].type, node.inputs[1].type
    layout = xt.effective_layout or "NCHW"
    n, c, h, wd = layout_shape(xt.shape, layout, "NCHW")
    a = node.attrs
    return ConvSpec(n, c, h, wd, wt.shape[0], wt.shape[2], wt.shape[3], pair(a["stride"], "stride"),
                    pads4(a["pad"]), pair(a["dilation"], "dilation"), a["group"],
                    dtypes.to_numpy(xt.dtype).name, 1.0 if w is None else weight_density(w))


def fc_spec(node: Node, w: np.ndarray | None = None) -> FCSpec:
    """The (batch, K) x (M, K) geometry of a fully_connected node."""
    xt, wt = node.inputs[0].type, node.inputs[1].type
    axis = node.attrs["axis"] % max(xt.rank, 1)
    return FCSpec(math.prod(xt.shape[:axis]), wt.shape[1], wt.shape[0], dtypes.to_numpy(xt.dtype).name,
                  1.0 if w is None else weight_density(w))


def _checked(node: Node, spec: ConvSpec | FCSpec, layout: str) -> Primitive:
    prim = get_primitive(node.attrs["primitive"], node.op)
    where = f"node '{node.name}' ({node.op})"
    if layout != prim.in_layout and prim.op == "conv":
        raise LpdcExecutionError(f"primitive {prim.name} takes {prim.in_layout} input, the node's input is {layout}",
                                 where=where)
    if node.attrs.get("activation") == "prelu" and layout != "NCHW":
        raise LpdcExecutionError(f"a fused prelu needs NCHW, the node's input is {layout}", where=where)
    if not prim.applies(spec):
        raise LpdcExecutionError(f"primitive {prim.name} does not apply to this layer ({spec})", where=where)
    return prim


# The checked (spec, primitive) of recently run nodes: an executable runs the same nodes again and
# again, and deriving the spec costs more than a small convolution. Entries are validated by the
# identity of the node and its weights and by its primitive and types, so a recycled id never matches.
_RESOLVED: dict[int, tuple[Node, tuple, np.ndarray, ConvSpec | FCSpec, Primitive]] = {}
_RESOLVED_LIMIT = 4096


def _resolve(node: Node, w: np.ndarray, layout: str) -> tuple[ConvSpec | FCSpec, Primitive]:
    hit = _RESOLVED.get(id(node))
    state = (node.attrs["primitive"], node.inputs[0].type, node.outputs[0].type)
    if hit is not None and hit[0] is node and hit[1] == state and hit[2] is w:
        return hit[3], hit[4]
    spec = conv_spec(node, w) if node.op == "conv" else fc_spec(node, w)
    prim = _checked(node, spec, layout)
    if len(_RESOLVED) >= _RESOLVED_LIMIT:
        _RESOLVED.clear()
    _RESOLVED[id(node)] = (node, state, w, spec, prim)
    return spec, prim


def run_conv(node: Node, ins: list, epilogue) -> np.ndarray:
    """Convolution by the node's primitive, then `epilogue(node, y, ins, channel_axis)` in its layout."""
    layout = node.inputs[0].type.effective_layout or "NCHW"
    spec, prim = _resolve(node, ins[1], layout)
    y = prim.run(ins[0], ins[1].astype(ins[0].dtype, copy=False), spec)
    if prim.out_layout == "NHWC":
        return epilogue(node, y, ins, 3)
    if is_blocked_layout(prim.out_layout):
        block = y.shape[-1]
        extras = list(ins)
        if len(extras) > 2 and extras[2] is not None:  # per-channel bias laid out as (C/b, 1, 1, b)
            y = y + extras[2].reshape(1, -1, 1, 1, block).astype(y.dtype, copy=False)
            extras[2] = None
        return epilogue(node, y, extras, 1)
    return epilogue(node, y, ins, 1)


def run_fc(node: Node, x2: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Fully-connected (batch, K) x (M, K)^T by the node's primitive (no epilogue)."""
    spec, prim = _resolve(node, w, "NC")
    return prim.run(x2, w.astype(x2.dtype, copy=False), spec)
