"""ONNX emitters for data movement: concat, split, slice, flatten, reshape, transpose, squeeze,
unsqueeze, pad, dropout, shape, gather, cast, reductions, resize and layout_convert."""

from __future__ import annotations

import math

import numpy as np

from ..ir import Node
from ..ir.types import is_blocked_layout
from .onnx_export import OnnxBuilder, onnx_elem
from .onnx_export_ops import emitter, np_dtype


@emitter("concat")
def _concat(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    b.node("Concat", ins, outs[0], name=node.name, axis=node.attrs["axis"])


@emitter("split")
def _split(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    sizes = b.ints(node.attrs["sizes"], f"{node.name}/split")
    b.node("Split", [ins[0], sizes], outs, name=node.name, axis=node.attrs["axis"])


@emitter("slice")
def _slice(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    axes = a["axes"] or list(range(len(a["starts"])))
    steps = a["steps"] or [1] * len(axes)
    b.node("Slice", [ins[0], b.ints(a["starts"], "starts"), b.ints(a["ends"], "ends"), b.ints(axes, "axes"),
                     b.ints(steps, "steps")], outs[0], name=node.name)


@emitter("flatten")
def _flatten(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    b.node("Flatten", ins, outs[0], name=node.name, axis=node.attrs["axis"])


@emitter("reshape")
def _reshape(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    # The inferred shape is static: write it out so 0 / -1 need no interpretation.
    out_shape = node.outputs[0].type.shape
    shape = b.ints(out_shape, f"{node.name}/shape")
    b.node("Reshape", [ins[0], shape], outs[0], name=node.name, allowzero=1 if 0 in out_shape else None)


@emitter("transpose")
def _transpose(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    perm = node.attrs["perm"] or list(range(node.inputs[0].type.rank))[::-1]
    b.node("Transpose", ins, outs[0], name=node.name, perm=list(perm))


@emitter("squeeze", "unsqueeze")
def _squeeze(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    x_t = node.inputs[0].type
    axes = node.attrs["axes"]
    if node.op == "squeeze" and not axes:
        axes = [i for i, d in enumerate(x_t.shape) if d == 1]
    op = "Squeeze" if node.op == "squeeze" else "Unsqueeze"
    b.node(op, [ins[0], b.ints(axes, f"{node.name}/axes")], outs[0], name=node.name)


@emitter("pad")
def _pad(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    if a["mode"] == "wrap":
        b.require_opset(19)
    value = b.const(np.asarray(a["value"]).astype(np_dtype(node)), "pad_value") if a["mode"] == "constant" else None
    b.node("Pad", [ins[0], b.ints(a["pads"], f"{node.name}/pads"), value], outs[0], name=node.name, mode=a["mode"])


@emitter("dropout")
def _dropout(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    ratio = b.const(np.asarray(node.attrs["ratio"], np.float32), "ratio")
    b.node("Dropout", [ins[0], ratio], outs[0], name=node.name)


@emitter("shape")
def _shape(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    if a["start"] != 0 or a["end"] is not None:
        b.require_opset(15)
    b.node("Shape", ins, outs[0], name=node.name, start=a["start"] or None, end=a["end"])


@emitter("gather")
def _gather(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    b.node("Gather", ins, outs[0], name=node.name, axis=node.attrs["axis"])


@emitter("cast")
def _cast(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    b.node("Cast", ins, outs[0], name=node.name, to=onnx_elem(node.attrs["to"]))


_REDUCE = {"reduce_mean": "ReduceMean", "reduce_sum": "ReduceSum", "reduce_max": "ReduceMax",
           "reduce_min": "ReduceMin"}


@emitter(*_REDUCE)
def _reduce(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    axes = list(a["axes"]) or list(range(node.inputs[0].type.rank))
    if node.op == "reduce_sum":  # axes became an input for ReduceSum in opset 13, for the others in 18
        b.node("ReduceSum", [ins[0], b.ints(axes, "axes")], outs[0], name=node.name, keepdims=int(a["keepdims"]))
        return
    b.node(_REDUCE[node.op], ins, outs[0], name=node.name, axes=axes, keepdims=int(a["keepdims"]))


@emitter("resize")
def _resize(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    x_shape, out_shape = node.inputs[0].type.shape, node.outputs[0].type.shape
    scales = a["scales"]
    use_scales = bool(scales) and all(math.floor(d * s + 1e-9) == o for d, s, o in zip(x_shape, scales, out_shape,
                                                                                         strict=True))
    if a["antialias"]:
        b.require_opset(18)
    if a["coordinate_transformation_mode"] == "half_pixel_symmetric":
        b.require_opset(19)
    roi = b.const(np.asarray(a["roi"], np.float32), "roi") if a["roi"] else None
    sc = b.const(np.asarray(scales, np.float32), "scales") if use_scales else None
    sz = None if use_scales else b.ints(out_shape, "sizes")
    b.node("Resize", [ins[0], roi, sc, sz], outs[0], name=node.name, mode=a["mode"],
           coordinate_transformation_mode=a["coordinate_transformation_mode"], nearest_mode=a["nearest_mode"],
           cubic_coeff_a=a["cubic_coeff_a"], exclude_outside=int(a["exclude_outside"]),
           extrapolation_value=a["extrapolation_value"], antialias=int(a["antialias"]) if a["antialias"] else None)


@emitter("layout_convert")
def _layout_convert(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    """NCHW <-> NHWC <-> NCHW<k>c through NCHW: Transposes, and Pad/Reshape/Slice for channel blocks."""
    a = node.attrs
    src, dst = a["src"], a["dst"]
    x = ins[0]
    shape = list(node.inputs[0].type.shape)
    if src == "NHWC":
        x = b.node("Transpose", [x], None, name=node.name, perm=[0, 3, 1, 2])
        shape = [shape[0], shape[3], shape[1], shape[2]]
    elif is_blocked_layout(src):
        n, cb, h, w, k = shape
        x = b.node("Transpose", [x], None, name=node.name, perm=[0, 1, 4, 2, 3])
        x = b.node("Reshape", [x, b.ints([n, cb * k, h, w], "shape")], None, name=node.name)
        shape = [n, a["channels"], h, w]
        x = b.node("Slice", [x, b.ints([0], "start"), b.ints([a["channels"]], "end"), b.ints([1], "axis")], None,
                   name=node.name)
    if dst == "NCHW":
        b.node("Identity", [x], outs[0], name=node.name)
    elif dst == "NHWC":
        b.node("Transpose", [x], outs[0], name=node.name, perm=[0, 2, 3, 1])
    else:
        k = int(dst[4:-1])
        n, c, h, w = shape
        cb = -(-c // k)
        if cb * k != c:
            x = b.node("Pad", [x, b.ints([0, 0, 0, 0, 0, cb * k - c, 0, 0], "pads")], None, name=node.name)
        x = b.node("Reshape", [x, b.ints([n, cb, k, h, w], "shape")], None, name=node.name)
        b.node("Transpose", [x], outs[0], name=node.name, perm=[0, 1, 3, 4, 2])
