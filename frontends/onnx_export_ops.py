"""Per-op ONNX emitters for `export_onnx`: `fn(builder, node, input names, output names)`.

Each IR op becomes the ONNX nodes that compute the same tensor; epilogues (bias, residual,
activation) unfold into separate nodes. Quantization, integer convolutions and layout
conversions are in onnx_export_quant.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import LpdcUnsupportedError
from ..ir import Node, dtypes
from .onnx_export import OnnxBuilder, onnx_elem

Emitter = Callable[[OnnxBuilder, Node, list[str | None], list[str]], None]
EMITTERS: dict[str, Emitter] = {}
# Ops whose ONNX form assumes NCHW: NHWC inputs are transposed around them.
LAYOUT_SENSITIVE = frozenset({"conv", "conv_transpose", "batch_norm", "lrn", "normalize", "max_pool", "avg_pool",
                              "global_avg_pool", "global_max_pool"})


def emitter(*ops: str) -> Callable[[Emitter], Emitter]:
    def deco(fn: Emitter) -> Emitter:
        for op in ops:
            EMITTERS[op] = fn
        return fn
    return deco


def emit_with_layout(b: OnnxBuilder, node: Node, fn: Emitter) -> None:
    """Run `fn` in NCHW: transpose NHWC activations (input 0, a conv's residual) in and outputs back."""
    ins = [None if v is None else v.name for v in node.inputs]
    nhwc = [0] if node.inputs[0].type.effective_layout == "NHWC" else []
    if len(ins) > 3 and ins[3] is not None and node.outputs[0].type.effective_layout == "NHWC":
        nhwc.append(3)  # the residual is laid out like the output
    for i in nhwc:
        ins[i] = b.node("Transpose", [ins[i]], None, name=f"{node.name}/to_nchw", perm=[0, 3, 1, 2])
    outs = [v.name for v in node.outputs]
    back = [k for k, v in enumerate(node.outputs) if v.type.effective_layout == "NHWC"]
    tmp = {k: b.fresh(f"{outs[k]}/nchw") for k in back}
    fn(b, node, ins, [tmp.get(k, o) for k, o in enumerate(outs)])
    for k in back:
        b.node("Transpose", [tmp[k]], outs[k], name=f"{node.name}/to_nhwc", perm=[0, 2, 3, 1])


def np_dtype(node: Node, index: int = 0) -> np.dtype:
    v = node.inputs[index] if index >= 0 else node.outputs[0]
    return dtypes.to_numpy(v.type.dtype)


def activation(b: OnnxBuilder, node: Node, x: str, out: str, kind: str, alpha: float, beta: float,
               slope: str | None, dtype: np.dtype) -> None:
    """One activation (the epilogue vocabulary) from `x` into `out`."""
    name = f"{node.name}/{kind}"
    if kind == "none":
        b.node("Identity", [x], out, name=name)
    elif dtype.kind in "iu":
        _int_activation(b, name, x, out, kind, alpha, beta, dtype)
    elif kind == "relu":
        b.node("Relu", [x], out, name=name)
    elif kind in ("relu6", "clip"):
        lo, hi = (0.0, 6.0) if kind == "relu6" else (alpha, beta)
        b.node("Clip", [x, _bound(b, lo, dtype, "min"), _bound(b, hi, dtype, "max")], out, name=name)
    elif kind == "leaky_relu":
        b.node("LeakyRelu", [x], out, name=name, alpha=alpha)
    elif kind == "prelu":
        b.node("PRelu", [x, slope], out, name=name)
    elif kind == "elu":
        b.node("Elu", [x], out, name=name, alpha=alpha)
    elif kind == "hard_sigmoid":
        b.node("HardSigmoid", [x], out, name=name, alpha=alpha, beta=beta)
    else:
        b.node({"sigmoid": "Sigmoid", "tanh": "Tanh", "hard_swish": "HardSwish"}[kind], [x], out, name=name)


def _bound(b: OnnxBuilder, v: float, dtype: np.dtype, what: str) -> str | None:
    return None if math.isinf(v) else b.const(np.asarray(v, dtype), what)


def _int_activation(b: OnnxBuilder, name: str, x: str, out: str, kind: str, lo: float, hi: float,
                    dtype: np.dtype) -> None:
    """ReLU and clips on integer accumulators, as Max/Min (defined for every integer type)."""
    if kind not in ("relu", "relu6", "clip"):
        raise LpdcUnsupportedError(f"activation {kind} on integer tensors cannot be exported", where=name)
    lo, hi = {"relu": (0, math.inf), "relu6": (0, 6)}.get(kind, (lo, hi))
    y = x
    if not math.isinf(lo):
        y = b.node("Max", [y, b.const(np.asarray(math.ceil(lo), dtype), "lo")], None if not math.isinf(hi) else out,
                   name=name)
    if not math.isinf(hi):
        y = b.node("Min", [y, b.const(np.asarray(math.floor(hi), dtype), "hi")], out, name=name)
    if y != out:
        b.node("Identity", [y], out, name=name)


def epilogue(b: OnnxBuilder, node: Node, y: str, ins: list[str | None], out: str, channel_axis: int) -> None:
    """Residual add and activation after a conv / fully_connected body computed into `y`."""
    residual = ins[3] if len(ins) > 3 else None
    if residual is not None:
        y = b.node("Add", [y, residual], None, name=f"{node.name}/residual")
    a = node.attrs
    slope = ins[4] if len(ins) > 4 else None
    activation(b, node, y, out, a["activation"], a["act_alpha"], a["act_beta"], slope, np_dtype(node, -1))


def per_channel(b: OnnxBuilder, name: str, rank: int, axis: int, base: str) -> str:
    """Reshape a per-channel vector so it broadcasts along `axis` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = -1
    return b.node("Reshape", [name, b.ints(shape, f"{base}/shape")], None, name=base)


def conv_attrs(a: dict[str, Any], w_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"kernel_shape": list(w_shape[2:]), "strides": list(a["stride"]), "pads": list(a["pad"]),
            "dilations": list(a["dilation"]), "group": a["group"]}


def _has_post(node: Node, ins: list[str | None]) -> bool:
    """Whether a residual add or an activation follows the body (else the body writes the output)."""
    return (len(ins) > 3 and ins[3] is not None) or node.attrs["activation"] != "none"


@emitter("conv")
def _conv(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    post = _has_post(node, ins)
    body_out = None if post else outs[0]
    if node.inputs[0].type.dtype not in dtypes.FLOAT_DTYPES:
        from .onnx_export_quant import integer_conv

        y = integer_conv(b, node, ins, body_out)
    else:
        y = b.node("Conv", ins[:3], body_out, name=node.name, **conv_attrs(node.attrs, node.inputs[1].type.shape))
    if post:
        epilogue(b, node, y, ins, outs[0], 1)


@emitter("conv_transpose")
def _conv_transpose(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    post = a["activation"] != "none"
    attrs = conv_attrs(a, node.inputs[1].type.shape)
    y = b.node("ConvTranspose", ins[:3], None if post else outs[0], name=node.name,
               output_padding=list(a["output_padding"]), **attrs)
    if post:
        activation(b, node, y, outs[0], a["activation"], a["act_alpha"], a["act_beta"], None, np_dtype(node))


@emitter("fully_connected")
def _fully_connected(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    x_t, out_t = node.inputs[0].type, node.outputs[0].type
    axis = node.attrs["axis"] % max(x_t.rank, 1)
    post, reshape = _has_post(node, ins), out_t.rank != 2
    x = ins[0]
    if x_t.rank != 2 or axis != 1:
        x = b.node("Flatten", [x], None, name=f"{node.name}/flatten", axis=axis)
    body_out = None if post or reshape else outs[0]
    if x_t.dtype not in dtypes.FLOAT_DTYPES:
        from .onnx_export_quant import integer_fc

        y = integer_fc(b, node, x, ins, body_out)
    else:
        y = b.node("Gemm", [x, ins[1], ins[2]], body_out, name=node.name, transB=1)
    if reshape:
        y = b.node("Reshape", [y, b.ints(out_t.shape, f"{node.name}/shape")], None if post else outs[0],
                   name=f"{node.name}/reshape")
    if post:
        epilogue(b, node, y, ins, outs[0], out_t.rank - 1)


@emitter("gemm")
def _gemm(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    b.node("Gemm", ins, outs[0], name=node.name, alpha=a["alpha"], beta=a["beta"], transA=int(a["trans_a"]),
           transB=int(a["trans_b"]))


@emitter("batch_norm")
def _batch_norm(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    b.node("BatchNormalization", ins, outs[0], name=node.name, epsilon=node.attrs["eps"])


@emitter("scale", "bias")
def _scale_bias(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    """Caffe Scale/Bias: the parameter laid over x's axes from `axis`, as a broadcasting Mul/Add."""
    x_t, p_t = node.inputs[0].type, node.inputs[1].type
    axis = node.attrs["axis"] % x_t.rank
    dims = [p_t.size] if p_t.rank == 1 else list(p_t.shape)
    shape = [1] * axis + dims + [1] * (x_t.rank - axis - len(dims))
    params = [b.node("Reshape", [p, b.ints(shape, f"{node.name}/shape")], None, name=f"{node.name}/reshape")
              for p in ins[1:] if p is not None]
    if node.op == "bias":
        b.node("Add", [ins[0], params[0]], outs[0], name=node.name)
        return
    y = b.node("Mul", [ins[0], params[0]], None if len(params) > 1 else outs[0], name=node.name)
    if len(params) > 1:
        b.node("Add", [y, params[1]], outs[0], name=f"{node.name}/bias")


@emitter("lrn")
def _lrn(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    if a["region"] == "across":
        b.node("LRN", ins, outs[0], name=node.name, size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["bias"])
        return
    # Within a channel: x / (bias + alpha * mean of x^2 over the zero-padded size x size window)^beta.
    dt, half = np_dtype(node), (a["size"] - 1) // 2
    sq = b.node("Mul", [ins[0], ins[0]], None, name=f"{node.name}/square")
    avg = b.node("AveragePool", [sq], None, name=f"{node.name}/window", kernel_shape=[a["size"]] * 2,
                 pads=[half] * 4, count_include_pad=1)
    norm = b.node("Add", [b.node("Mul", [avg, b.const(np.asarray(a["alpha"], dt), "alpha")], None, name=node.name),
                          b.const(np.asarray(a["bias"], dt), "bias")], None, name=node.name)
    den = b.node("Pow", [norm, b.const(np.asarray(a["beta"], dt), "beta")], None, name=node.name)
    b.node("Div", [ins[0], den], outs[0], name=node.name)


@emitter("normalize")
def _normalize(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    """SSD Normalize: x / sqrt(sum(x^2) + eps) * scale, over (C, H, W) or over C."""
    a, dt = node.attrs, np_dtype(node)
    axes = [1, 2, 3] if a["across_spatial"] else [1]
    sq = b.node("Mul", [ins[0], ins[0]], None, name=f"{node.name}/square")
    total = b.node("ReduceSum", [sq, b.ints(axes, "axes")], None, name=node.name, keepdims=1)
    norm = b.node("Sqrt", [b.node("Add", [total, b.const(np.asarray(a["eps"], dt), "eps")], None, name=node.name)],
                  None, name=node.name)
    y = b.node("Div", [ins[0], norm], None, name=node.name)
    scale = ins[1] if a["channel_shared"] else per_channel(b, ins[1], 4, 1, f"{node.name}/scale")
    b.node("Mul", [y, scale], outs[0], name=node.name)


@emitter("softmax", "log_softmax")
def _softmax(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    b.node("Softmax" if node.op == "softmax" else "LogSoftmax", ins, outs[0], name=node.name, axis=node.attrs["axis"])


@emitter("max_pool", "avg_pool")
def _pool(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    attrs: dict[str, Any] = {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"]), "pads": list(a["pad"]),
                             "ceil_mode": int(a["ceil_mode"])}
    if any(d != 1 for d in a["dilation"]):
        attrs["dilations"] = list(a["dilation"])
        if node.op == "avg_pool":
            b.require_opset(19)  # AveragePool gained dilations in opset 19
    if node.op == "avg_pool":
        attrs["count_include_pad"] = int(a["count_include_pad"])
    b.node("MaxPool" if node.op == "max_pool" else "AveragePool", ins, outs[0], name=node.name, **attrs)


_SIMPLE = {"global_avg_pool": "GlobalAveragePool", "global_max_pool": "GlobalMaxPool", "relu": "Relu",
           "sigmoid": "Sigmoid", "tanh": "Tanh", "hard_swish": "HardSwish", "abs": "Abs", "exp": "Exp", "log": "Log",
           "sqrt": "Sqrt", "neg": "Neg", "reciprocal": "Reciprocal", "softplus": "Softplus", "identity": "Identity",
           "prelu": "PRelu", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow",
           "matmul": "MatMul"}


@emitter(*_SIMPLE)
def _simple(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    b.node(_SIMPLE[node.op], ins, outs[0], name=node.name)


@emitter("leaky_relu", "elu", "hard_sigmoid", "clip")
def _param_activation(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    alpha, beta = {"clip": (a.get("min"), a.get("max"))}.get(node.op, (a.get("alpha", 0.0), a.get("beta", 0.0)))
    activation(b, node, ins[0], outs[0], node.op, alpha, beta, None, np_dtype(node))


@emitter("power")
def _power(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a, dt = node.attrs, np_dtype(node)
    y = b.node("Mul", [ins[0], b.const(np.asarray(a["scale"], dt), "scale")], None, name=node.name)
    y = b.node("Add", [y, b.const(np.asarray(a["shift"], dt), "shift")], None, name=node.name)
    b.node("Pow", [y, b.const(np.asarray(a["power"], dt), "power")], outs[0], name=node.name)


@emitter("add")
def _add(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    a = node.attrs
    if a["activation"] == "none":
        b.node("Add", ins[:2], outs[0], name=node.name)
        return
    y = b.node("Add", ins[:2], None, name=node.name)
    slope = ins[2] if len(ins) > 2 else None
    activation(b, node, y, outs[0], a["activation"], a["act_alpha"], a["act_beta"], slope, np_dtype(node))


@emitter("eltwise")
def _eltwise(b: OnnxBuilder, node: Node, ins: list[str | None], outs: list[str]) -> None:
    op, coeffs, dt = node.attrs["op"], node.attrs["coeffs"], np_dtype(node)
    xs = [x for x in ins if x is not None]
    if coeffs:
        xs = [b.node("Mul", [x, b.const(np.asarray(c, dt), "coeff")], None, name=node.name)
              for x, c in zip(xs, coeffs, strict=True)]
    if op == "prod":
        y = xs[0]
        for i, x in enumerate(xs[1:], start=2):
            y = b.node("Mul", [y, x], outs[0] if i == len(xs) else None, name=node.name)
        if len(xs) == 1:
            b.node("Identity", [y], outs[0], name=node.name)
        return
    b.node({"sum": "Sum", "mean": "Mean", "max": "Max", "min": "Min"}[op], xs, outs[0], name=node.name)


from . import onnx_export_quant, onnx_export_tensor  # noqa: E402,F401  (register their emitters)

__all__ = ["onnx_elem"]
