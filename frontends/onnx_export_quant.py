"""ONNX emitters for quantized graphs (QDQ form): quantize, dequantize, requantize, and the
integer bodies of conv and fully_connected.

Scales and zero points come from the IR types. int8/uint8 use QuantizeLinear/DequantizeLinear
(per tensor or per axis) and ConvInteger/MatMulInteger; other integer and fixed-point types
(fxW_F: scale 2**-F, zero point 0) use the same formulas as plain arithmetic
(q = clip(round(x / s) + z), x = (q - z) * s), so any quantized IR graph exports.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node, TensorType, dtypes
from .onnx_export import OnnxBuilder, onnx_elem
from .onnx_export_ops import conv_attrs, emitter, per_channel

_QDQ_TYPES = ("u8", "i8")
_F32 = 1  # TensorProto.FLOAT


def qparams(t: TensorType) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(scale, zero point, axis) meant by a quantized, fixed-point or raw-integer type."""
    bits = dtypes.fixed_bits(t.dtype)
    store = dtypes.to_numpy(t.dtype)
    if bits is not None:
        return np.asarray(2.0 ** -bits[1], np.float32), np.asarray(0, store), None
    if t.quant is None:
        return np.asarray(1.0, np.float32), np.asarray(0, store), None
    q = t.quant
    if q.axis is None:
        return np.asarray(q.scale[0], np.float32), np.asarray(q.zero_point[0], store), None
    return np.asarray(q.scale, np.float32), np.asarray(q.zero_point, store), q.axis


def _broadcastable(b: OnnxBuilder, arr: np.ndarray, axis: int | None, rank: int, base: str) -> str:
    if axis is None:
        return b.const(arr, base)
    shape = [1] * rank
    shape[axis] = -1
    return b.const(arr.reshape(shape), base)


def to_float(b: OnnxBuilder, name: str, t: TensorType, base: str) -> str:
    """float32 real values of integer tensor `name` of type `t`."""
    scale, zp, axis = qparams(t)
    if t.dtype in _QDQ_TYPES + ("i32",) and (t.dtype != "i32" or not np.any(zp)):
        return b.node("DequantizeLinear", [name, b.const(scale, "scale"), b.const(zp, "zero_point")], None,
                      name=base, axis=axis)
    y = b.node("Cast", [name], None, name=base, to=_F32)
    if np.any(zp):
        y = b.node("Sub", [y, _broadcastable(b, zp.astype(np.float32), axis, t.rank, "zero_point")], None, name=base)
    return b.node("Mul", [y, _broadcastable(b, scale, axis, t.rank, "scale")], None, name=base)


def from_float(b: OnnxBuilder, name: str, t: TensorType, out: str, base: str) -> None:
    """Quantize float32 tensor `name` into `out` of type `t`."""
    scale, zp, axis = qparams(t)
    if t.dtype in _QDQ_TYPES:
        b.node("QuantizeLinear", [name, b.const(scale, "scale"), b.const(zp, "zero_point")], out, name=base, axis=axis)
        return
    info = np.iinfo(dtypes.to_numpy(t.dtype))
    y = b.node("Div", [name, _broadcastable(b, scale, axis, t.rank, "scale")], None, name=base)
    y = b.node("Round", [y], None, name=base)  # half to even, as the IR's quantize
    if np.any(zp):
        y = b.node("Add", [y, _broadcastable(b, zp.astype(np.float32), axis, t.rank, "zero_point")], None, name=base)
    y = b.node("Clip", [y, b.const(np.float32(info.min), "min"), b.const(np.float32(info.max), "max")], None,
               name=base)
    b.node("Cast", [y], out, name=base, to=onnx_elem(t.dtype))


@emitter("quantize")
def _quantize(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    x = ins[0]
    if node.inputs[0].type.dtype != "f32":
        x = b.node("Cast", [x], None, name=node.name, to=_F32)
    from_float(b, x, node.outputs[0].type, outs[0], node.name)


@emitter("dequantize")
def _dequantize(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    y = to_float(b, ins[0], node.inputs[0].type, node.name)
    b.node("Cast", [y], outs[0], name=node.name, to=onnx_elem(node.attrs["dtype"]))


@emitter("requantize")
def _requantize(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    y = to_float(b, ins[0], node.inputs[0].type, node.name)
    from_float(b, y, node.outputs[0].type, outs[0], node.name)


def _zero_point(b: OnnxBuilder, t: TensorType, base: str) -> str | None:
    _, zp, _ = qparams(t)
    return b.const(zp, base) if np.any(zp) else None


def _integer_ok(x: TensorType, w: TensorType) -> bool:
    """ConvInteger / MatMulInteger take 8-bit operands and a per-tensor zero point for the data."""
    return x.dtype in _QDQ_TYPES and w.dtype in _QDQ_TYPES and (x.quant is None or x.quant.axis is None)


def _centred_float(b: OnnxBuilder, name: str, t: TensorType, base: str) -> str:
    """float32(q - zero point): exact integers, so a float conv then sums them exactly (below 2**24)."""
    _, zp, axis = qparams(t)
    y = b.node("Cast", [name], None, name=base, to=_F32)
    if np.any(zp):
        y = b.node("Sub", [y, _broadcastable(b, zp.astype(np.float32), axis, t.rank, "zero_point")], None, name=base)
    return y


def _add_bias(b: OnnxBuilder, node: Node, y: str, bias: str | None, axis: int, rank: int, out: str | None) -> str:
    if bias is None:
        return y if out is None else b.node("Identity", [y], out, name=f"{node.name}/out")
    acc = node.outputs[0].type.dtype
    if node.inputs[2].type.dtype != acc:
        bias = b.node("Cast", [bias], None, name=f"{node.name}/bias", to=onnx_elem(acc))
    return b.node("Add", [y, per_channel(b, bias, rank, axis, f"{node.name}/bias")], out, name=f"{node.name}/bias")


def integer_conv(b: OnnxBuilder, node: Node, ins: list[str | None], out: str | None) -> str:
    """An integer conv body plus bias (int32 accumulator), without residual or activation."""
    x_t, w_t = node.inputs[0].type, node.inputs[1].type
    attrs = conv_attrs(node.attrs, w_t.shape)
    if _integer_ok(x_t, w_t):
        y = b.node("ConvInteger", [ins[0], ins[1], _zero_point(b, x_t, "x_zero_point"),
                                   _zero_point(b, w_t, "w_zero_point")], None, name=node.name, **attrs)
    else:
        xf, wf = _centred_float(b, ins[0], x_t, node.name), _centred_float(b, ins[1], w_t, node.name)
        y = b.node("Cast", [b.node("Conv", [xf, wf], None, name=node.name, **attrs)], None, name=node.name,
                   to=onnx_elem(node.outputs[0].type.dtype))
    return _add_bias(b, node, y, ins[2] if len(ins) > 2 else None, 1, 4, out)


def integer_fc(b: OnnxBuilder, node: Node, x: str, ins: list[str | None], out: str | None) -> str:
    """y = (x - zx) @ (w - zw).T + bias in the integer accumulator type."""
    x_t, w_t = node.inputs[0].type, node.inputs[1].type
    if _integer_ok(x_t, w_t):
        wt = b.node("Transpose", [ins[1]], None, name=f"{node.name}/weight_t", perm=[1, 0])
        y = b.node("MatMulInteger", [x, wt, _zero_point(b, x_t, "x_zero_point"), _zero_point(b, w_t, "w_zero_point")],
                   None, name=node.name)
    else:
        xf, wf = _centred_float(b, x, x_t, node.name), _centred_float(b, ins[1], w_t, node.name)
        y = b.node("Cast", [b.node("Gemm", [xf, wf], None, name=node.name, transB=1)], None, name=node.name,
                   to=onnx_elem(node.outputs[0].type.dtype))
    return _add_bias(b, node, y, ins[2] if len(ins) > 2 else None, 1, 2, out)
