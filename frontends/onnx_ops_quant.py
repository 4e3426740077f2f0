"""ONNX quantization converters: QuantizeLinear, DequantizeLinear, QLinearConv, ConvInteger.

The IR keeps quantization in types, so an integer tensor that ONNX dequantizes with constant
scale and zero point becomes a value typed with those parameters: constants are re-typed at
once, and graph inputs are typed up front by `input_quant` when every consumer agrees. Where a
tensor cannot carry them (it is computed, or consumers disagree), dequantization falls back to
plain arithmetic: (float(x) - zero_point) * scale, exactly ONNX's definition.

QLinearConv lowers to dequantize -> conv -> quantize (the QDQ form); ConvInteger to an integer
conv whose inputs carry their zero points (scale 1), accumulating in int32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LpdcUnsupportedError
from ..ir import Graph, Value, dtypes
from ..ir.types import QuantParams
from .onnx_context import Ctx, converter
from .onnx_ops_nn import emit_conv

# Consumers that read an integer tensor together with constant scale / zero point inputs:
# op -> {data slot: (scale slot or None for scale 1, zero point slot, fixed axis or None for attr)}
QUANT_SLOTS: dict[str, dict[int, tuple[int | None, int, int | None]]] = {
    "DequantizeLinear": {0: (1, 2, None)},
    "QLinearConv": {0: (1, 2, None), 3: (4, 5, 0)},
    "ConvInteger": {0: (None, 2, None), 1: (None, 3, 0)},
}


def quant_params(scale: np.ndarray | None, zp: np.ndarray | None, axis: int, rank: int) -> QuantParams:
    """Per-tensor parameters for one scale, per-axis ones for a vector of scales."""
    s = [1.0] if scale is None else [float(v) for v in np.asarray(scale).reshape(-1)]
    z = [0] * len(s) if zp is None or zp.size == 0 else [int(v) for v in np.asarray(zp).reshape(-1)]
    if len(z) == 1 and len(s) > 1:
        z = z * len(s)
    if len(s) == 1 and len(z) > 1:
        s = s * len(z)
    if len(s) == 1:
        return QuantParams(tuple(s), tuple(z), None)
    return QuantParams(tuple(s), tuple(z), axis + rank if axis < 0 else axis)


def input_quant(graph: Any, name: str, rank: int, g: Graph, values: dict[str, Value]) -> QuantParams | None:
    """Quantization for integer graph input `name` when all its consumers agree on constant parameters
    (ConvInteger constrains only the zero point)."""
    entries: list[tuple[QuantParams, bool]] = []
    for node in graph.node:
        for slot, inp in enumerate(node.input):
            if inp != name:
                continue
            q = _consumer_quant(node, slot, rank, g, values)
            if q is None:
                return None
            entries.append((q, QUANT_SLOTS[node.op_type][slot][0] is None))
    full = [q for q, zp_only in entries if not zp_only]
    if not entries or any(q != full[0] for q in full):
        return None
    chosen = full[0] if full else entries[0][0]
    return chosen if all(_zero_points(q) == _zero_points(chosen) for q, _ in entries) else None


def _consumer_quant(node: Any, slot: int, rank: int, g: Graph, values: dict[str, Value]) -> QuantParams | None:
    """The constant quantization one consumer reads its input `slot` with, or None."""
    spec = QUANT_SLOTS.get(node.op_type, {}).get(slot)
    if spec is None or any(a.name == "block_size" and a.i for a in node.attribute):
        return None
    s_slot, z_slot, fixed_axis = spec
    scale = _const_of(node, s_slot, g, values) if s_slot is not None else None
    zp = _const_of(node, z_slot, g, values)
    zp_given = z_slot < len(node.input) and bool(node.input[z_slot])
    if (s_slot is not None and scale is None) or (zp_given and zp is None):
        return None
    axis = fixed_axis if fixed_axis is not None else _axis_attr(node)
    try:
        q = quant_params(scale, zp, axis, rank)
    except Exception:  # bad parameters: let the converter report them with the node's name
        return None
    return None if q.axis is not None and q.axis >= rank else q


def _zero_points(q: QuantParams) -> tuple[int | None, tuple[int, ...]]:
    """Zero points in a form where one value per tensor equals the same value repeated per channel."""
    return (None, q.zero_point[:1]) if len(set(q.zero_point)) == 1 else (q.axis, q.zero_point)


def _const_of(node: Any, slot: int, g: Graph, values: dict[str, Value]) -> np.ndarray | None:
    if slot >= len(node.input) or not node.input[slot]:
        return None
    v = values.get(node.input[slot])
    return None if v is None else g.const_data(v)


def _axis_attr(node: Any) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def typed(ctx: Ctx, v: Value, q: QuantParams) -> Value | None:
    """`v` carrying quantization `q`: itself when it does, a re-typed constant, or None if impossible."""
    if v.type.quant == q:
        return v
    data = ctx.g.const_data(v)
    if data is None:
        return None
    return ctx.g.add_const(data, f"{v.name}/q", v.type.dtype, quant=q)


def dequantized(ctx: Ctx, x: Value, scale: np.ndarray, zp: np.ndarray | None, axis: int,
                out: int | None = None) -> Value:
    """Float values of integer `x` under (scale, zero point)."""
    out_dtype = dtypes.from_numpy(scale.dtype) if scale.dtype.kind == "f" else "f32"
    if zp is not None and zp.size and zp.dtype != dtypes.to_numpy(x.type.dtype):
        raise LpdcUnsupportedError(f"zero point type {zp.dtype} differs from the data type {x.type.dtype}")
    q = quant_params(scale, zp, axis, x.type.rank)
    xq = typed(ctx, x, q)
    if xq is not None:
        return ctx.op("dequantize", xq, out=out, dtype=out_dtype)
    return _arith_dequantize(ctx, x, q, out_dtype, out)


def _arith_dequantize(ctx: Ctx, x: Value, q: QuantParams, dtype: str, out: int | None) -> Value:
    np_t = dtypes.to_numpy(dtype)
    shape = [1] * x.type.rank
    if q.axis is not None:
        shape[q.axis] = -1
    xf = ctx.op("cast", x, to=dtype)
    if any(q.zero_point):
        xf = ctx.op("sub", xf, ctx.constant(np.asarray(q.zero_point, np_t).reshape(shape), "zero_point"))
    return ctx.op("mul", xf, ctx.constant(np.asarray(q.scale, np_t).reshape(shape), "scale"), out=out)


@converter("DequantizeLinear", static=(1, 2))
def _dequantize(ctx: Ctx) -> list[Value]:
    x, scale, zp = ctx.inp(0), ctx.static(1, "x_scale"), ctx.static(2, "x_zero_point")
    assert scale is not None
    axis = int(ctx.attr("axis", 1))
    if int(ctx.attr("block_size", 0)):
        s, z = _blocked(ctx, x, scale, zp, axis)
        xf = ctx.op("cast", x, to=dtypes.from_numpy(scale.dtype))
        return [ctx.op("mul", ctx.op("sub", xf, ctx.constant(z.astype(scale.dtype), "zero_point")),
                       ctx.constant(s, "scale"), out=0)]
    return [dequantized(ctx, x, scale, zp, axis, out=0)]


def _blocked(ctx: Ctx, x: Value, scale: np.ndarray, zp: np.ndarray | None,
             axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocked scales and zero points repeated to x's full shape (each covers block_size elements)."""
    block = int(ctx.attr("block_size"))
    axis = axis + x.type.rank if axis < 0 else axis
    n = x.type.shape[axis]
    z = np.zeros_like(scale, dtype=np.int64) if zp is None else zp.astype(np.int64)
    s_full = np.take(np.repeat(scale, block, axis=axis), np.arange(n), axis=axis)
    z_full = np.take(np.repeat(z, block, axis=axis), np.arange(n), axis=axis)
    if s_full.shape != x.type.shape:
        raise LpdcUnsupportedError(f"blocked scale {list(scale.shape)} does not fit input {list(x.type.shape)}")
    return s_full, z_full


@converter("QuantizeLinear", static=(1, 2))
def _quantize(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    scale, zp = ctx.static(1, "y_scale"), ctx.static(2, "y_zero_point")
    assert scale is not None
    if zp is not None:
        dtype = ctx.inp(2).type.dtype
    elif ctx.attr("output_dtype"):
        from .onnx_tensors import ir_dtype

        dtype = ir_dtype(int(ctx.attr("output_dtype")), ctx.where)
    else:
        dtype = "u8"
    axis = int(ctx.attr("axis", 1))
    if int(ctx.attr("block_size", 0)):
        return [_blocked_quantize(ctx, x, *_blocked(ctx, x, scale, zp, axis), dtype)]
    return [quantize(ctx, x, quant_params(scale, zp, axis, x.type.rank), dtype, out=0)]


def _blocked_quantize(ctx: Ctx, x: Value, scale: np.ndarray, zp: np.ndarray, dtype: str) -> Value:
    """clamp(round(x / scale) + zero_point) with element-wise parameters: rounding is a quantize
    to int32 with scale 1, the rest plain integer arithmetic."""
    q = ctx.op("quantize", ctx.op("div", x, ctx.constant(scale.astype(dtypes.to_numpy(x.type.dtype)), "scale")),
               dtype="i32", scale=[1.0], zero_point=[0])
    q = ctx.op("add", q, ctx.constant(zp.astype(np.int32), "zero_point"))
    info = np.iinfo(dtypes.to_numpy(dtype))
    return ctx.op("cast", ctx.op("clip", q, min=float(info.min), max=float(info.max)), to=dtype, out=0)


def quantize(ctx: Ctx, x: Value, q: QuantParams, dtype: str, out: int | None) -> Value:
    return ctx.op("quantize", x, out=out, dtype=dtype, scale=list(q.scale), zero_point=list(q.zero_point), axis=q.axis)


@converter("QLinearConv", static=(1, 2, 4, 5, 6, 7))
def _qlinear_conv(ctx: Ctx) -> list[Value]:
    """dequantize(x), dequantize(w), float conv with the int32 bias scaled by x_scale*w_scale, quantize."""
    xs, xz = ctx.static(1, "x_scale"), ctx.static(2, "x_zero_point")
    ws, wz = ctx.static(4, "w_scale"), ctx.static(5, "w_zero_point")
    ys, yz = ctx.static(6, "y_scale"), ctx.static(7, "y_zero_point")
    assert xs is not None and ws is not None and ys is not None
    x = dequantized(ctx, ctx.inp(0), xs, xz, 1)
    w = dequantized(ctx, ctx.inp(3), ws, wz, 0)
    b = None
    if ctx.has_input(8):
        bias_scale = (np.asarray(xs, np.float64).reshape(-1) * np.asarray(ws, np.float64).reshape(-1)).astype(xs.dtype)
        b = dequantized(ctx, ctx.inp(8), bias_scale, None, 0)
    y = emit_conv(ctx, x, w, b, out=None)
    dtype = ctx.inp(7).type.dtype if yz is not None else "u8"
    return [quantize(ctx, y, quant_params(ys, yz, 1, y.type.rank), dtype, out=0)]


@converter("ConvInteger", static=(2, 3))
def _conv_integer(ctx: Ctx) -> list[Value]:
    """Integer conv: each input carries its zero point (scale 1); the IR conv subtracts it and sums in int32."""
    x, w = ctx.inp(0), ctx.inp(1)
    xz, wz = ctx.static(2, "x_zero_point"), ctx.static(3, "w_zero_point")
    xq = _with_zero_point(ctx, x, quant_params(None, xz, 1, x.type.rank))
    wq = _with_zero_point(ctx, w, quant_params(None, wz, 0, w.type.rank))
    if xq is None or wq is None:  # a computed input cannot carry the zero point: subtract it in int32
        xq, wq = _minus_zero_point(ctx, x, xz, 1), _minus_zero_point(ctx, w, wz, 0)
    return [emit_conv(ctx, xq, wq, None, out=0)]


def _with_zero_point(ctx: Ctx, v: Value, q: QuantParams) -> Value | None:
    """`v` typed with zero point(s) `q`; an integer conv reads only the zero points, so a value already
    quantized with the same ones (any scale) serves as it is."""
    if v.type.quant is not None and _zero_points(v.type.quant) == _zero_points(q):
        return v
    return typed(ctx, v, q)


def _minus_zero_point(ctx: Ctx, v: Value, zp: np.ndarray | None, axis: int) -> Value:
    vi = ctx.op("cast", v, to="i32")
    if zp is None or not np.any(zp):
        return vi
    shape = [1] * v.type.rank
    if zp.size > 1:
        shape[axis] = -1
    return ctx.op("sub", vi, ctx.constant(zp.astype(np.int32).reshape(shape), "zero_point"))
