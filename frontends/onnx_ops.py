"""ONNX converters for constants, activations, broadcasting arithmetic and simple data movement.

Spatial ops (conv, pooling, normalisation) live in onnx_ops_nn.py, shape-driven ops (reshape,
slice, pad, resize...) in onnx_ops_shape.py, quantization in onnx_ops_quant.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import LpdcUnsupportedError
from ..ir import Value
from .onnx_context import Ctx, converter
from .onnx_tensors import ir_dtype, tensor_to_array

# ONNX op -> (IR op, {onnx attribute: (IR attribute, default)})
_UNARY: dict[str, tuple[str, dict[str, tuple[str, float]]]] = {
    "Relu": ("relu", {}), "Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "Abs": ("abs", {}),
    "Exp": ("exp", {}), "Log": ("log", {}), "Sqrt": ("sqrt", {}), "Neg": ("neg", {}),
    "Reciprocal": ("reciprocal", {}), "Softplus": ("softplus", {}), "HardSwish": ("hard_swish", {}),
    "LeakyRelu": ("leaky_relu", {"alpha": ("alpha", 0.01)}),
    "Elu": ("elu", {"alpha": ("alpha", 1.0)}),
    "HardSigmoid": ("hard_sigmoid", {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}),
}


@converter(*_UNARY)
def _unary(ctx: Ctx) -> list[Value]:
    op, attr_map = _UNARY[ctx.op_type]
    attrs = {ir: float(ctx.attr(name, default)) for name, (ir, default) in attr_map.items()}
    return [ctx.emit(op, [ctx.inp(0)], attrs, out=0)[0]]


@converter("PRelu")
def _prelu(ctx: Ctx) -> list[Value]:
    return [ctx.op("prelu", ctx.inp(0), ctx.inp(1), out=0)]


@converter("Clip", static=(1, 2))
def _clip(ctx: Ctx) -> list[Value]:
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -np.inf), ctx.attr("max", np.inf)
    else:
        lo_d, hi_d = ctx.static(1, "min"), ctx.static(2, "max")
        lo = -np.inf if lo_d is None else float(np.asarray(lo_d).reshape(-1)[0])
        hi = np.inf if hi_d is None else float(np.asarray(hi_d).reshape(-1)[0])
    return [ctx.op("clip", ctx.inp(0), out=0, min=float(lo), max=float(hi))]


_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


@converter(*_BINARY)
def _binary(ctx: Ctx) -> list[Value]:
    a, b = ctx.inp(0), ctx.inp(1)
    if ctx.op_type == "Pow" and b.type.dtype != a.type.dtype:  # ONNX lets the exponent have its own type
        b = ctx.op("cast", b, to=a.type.dtype)
    return [ctx.op(_BINARY[ctx.op_type], a, b, out=0)]


_VARIADIC = {"Sum": ("add", "sum"), "Max": ("max", "max"), "Min": ("min", "min"), "Mean": (None, "mean")}


@converter(*_VARIADIC)
def _variadic(ctx: Ctx) -> list[Value]:
    xs = ctx.inputs()
    binary, kind = _VARIADIC[ctx.op_type]
    if len(xs) == 1:
        return [ctx.op("identity", xs[0], out=0)]
    if len(xs) == 2 and binary is not None:
        return [ctx.op(binary, xs[0], xs[1], out=0)]
    return [ctx.emit("eltwise", xs, {"op": kind}, out=0)[0]]


@converter("Softmax", "LogSoftmax")
def _softmax(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    op = "softmax" if ctx.op_type == "Softmax" else "log_softmax"
    rank = x.type.rank
    axis = int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1))
    axis = axis + rank if axis < 0 else axis
    if ctx.opset >= 13 or axis == rank - 1:
        return [ctx.op(op, x, out=0, axis=axis)]
    # Before opset 13 the input is coerced to 2-D at `axis` and normalised over the flattened tail.
    flat = ctx.op("flatten", x, axis=axis)
    y = ctx.op(op, flat, axis=1)
    return [ctx.op("reshape", y, out=0, shape=list(x.type.shape))]


@converter("Identity")
def _identity(ctx: Ctx) -> list[Value]:
    return [ctx.op("identity", ctx.inp(0), out=0)]


@converter("Dropout", static=(1, 2))
def _dropout(ctx: Ctx) -> list[Value | None]:
    x = ctx.inp(0)
    ratio, training = float(ctx.attr("ratio", 0.5)), False  # before opset 12 Dropout is inference-only
    if ctx.opset >= 12:
        r, t = ctx.static(1, "ratio"), ctx.static(2, "training_mode")
        ratio = ratio if r is None else float(np.asarray(r).reshape(-1)[0])
        training = False if t is None else bool(np.asarray(t).reshape(-1)[0])
    if training and ratio > 0:
        raise LpdcUnsupportedError("training-mode Dropout (random masks) is not supported; export in inference mode")
    y = ctx.op("dropout", x, out=0, ratio=ratio)
    mask = ctx.constant(np.ones(x.type.shape, np.bool_), "mask") if ctx.output_used(1) else None
    return [y, mask]


@converter("Round")
def _round(ctx: Ctx) -> list[Value]:
    """Round half to even: a quantize to int32 with scale 1 (as the IR's quantize rounds), cast back."""
    x = ctx.inp(0)
    q = ctx.op("quantize", x, dtype="i32", scale=[1.0], zero_point=[0])
    return [ctx.op("cast", q, out=0, to=x.type.dtype)]


@converter("Concat")
def _concat(ctx: Ctx) -> list[Value]:
    xs = ctx.inputs()
    return [ctx.emit("concat", xs, {"axis": int(ctx.attr("axis", 1))}, out=0)[0]]


@converter("Flatten")
def _flatten(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    axis = int(ctx.attr("axis", 1))
    return [ctx.op("flatten", x, out=0, axis=axis + x.type.rank if axis < 0 else axis)]


@converter("Transpose")
def _transpose(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    perm = ctx.ints("perm") or list(range(x.type.rank))[::-1]
    return [ctx.op("transpose", x, out=0, perm=perm)]


@converter("Cast")
def _cast(ctx: Ctx) -> list[Value]:
    to = ir_dtype(int(ctx.attr("to")), f"{ctx.where}: Cast 'to'")
    return [ctx.op("cast", ctx.inp(0), out=0, to=to)]


@converter("Shape")
def _shape(ctx: Ctx) -> list[Value]:
    end = ctx.attr("end")
    return [ctx.op("shape", ctx.inp(0), out=0, start=int(ctx.attr("start", 0)), end=None if end is None else int(end))]


@converter("Gather")
def _gather(ctx: Ctx) -> list[Value]:
    return [ctx.op("gather", ctx.inp(0), ctx.inp(1), out=0, axis=int(ctx.attr("axis", 0)))]


_REDUCE = {"ReduceMean": "reduce_mean", "ReduceSum": "reduce_sum", "ReduceMax": "reduce_max",
           "ReduceMin": "reduce_min"}


@converter(*_REDUCE, static=(1,))
def _reduce(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    # ReduceSum took axes as an input from opset 13, the others from 18.
    axes_as_input = ctx.opset >= (13 if ctx.op_type == "ReduceSum" else 18)
    axes = ctx.static_ints(1, "axes") if axes_as_input else ctx.ints("axes")
    keep = bool(ctx.attr("keepdims", 1))
    if not axes and ctx.attr("noop_with_empty_axes", 0):
        return [ctx.op("identity", x, out=0)]
    return [ctx.op(_REDUCE[ctx.op_type], x, out=0, axes=axes or [], keepdims=keep)]


@converter("Constant")
def _constant(ctx: Ctx) -> list[Value]:
    a = ctx.node.attribute
    if not a:
        raise LpdcUnsupportedError("Constant without a value")
    attr = a[0]
    if attr.name == "value":
        data = tensor_to_array(attr.t, None, ctx.max_elements, ctx.where)
    elif attr.name in ("value_float", "value_floats"):
        data = np.asarray(ctx.attrs[attr.name], np.float32)
    elif attr.name in ("value_int", "value_ints"):
        data = np.asarray(ctx.attrs[attr.name], np.int64)
    else:
        raise LpdcUnsupportedError(f"Constant with a {attr.name!r} attribute is not supported")
    dtype = ir_dtype(attr.t.data_type, ctx.where) if attr.name == "value" else None
    return [ctx.g.add_const(data, ctx.out_name(0), dtype)]


def as_list(data: np.ndarray | Sequence[float]) -> list[float]:
    return [float(x) for x in np.asarray(data).reshape(-1).tolist()]
