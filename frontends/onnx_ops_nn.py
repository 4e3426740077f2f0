"""ONNX converters for weighted and windowed layers: Conv, ConvTranspose, Gemm, MatMul,
BatchNormalization, MaxPool, AveragePool, the global pools and LRN.

The IR's spatial ops are 2-D. 1-D ONNX convolutions and pools run as 2-D ones on an inserted
unit height; 3-D pools run as two 2-D pools (max and average pooling are separable: a box
window's maximum is the maximum over depth of maxima over height-width, and a box's element
count is the product of its per-axis counts, with or without padding).
"""

from __future__ import annotations

import numpy as np

from ..errors import LpdcUnsupportedError
from ..ir import Value
from .onnx_context import Ctx, converter


def spatial_pads(ctx: Ctx, sizes: tuple[int, ...], kernel: list[int], strides: list[int],
                 dilations: list[int]) -> list[int]:
    """Padding in ONNX order [begin..., end...], resolving auto_pad SAME_UPPER/SAME_LOWER/VALID."""
    n = len(sizes)
    mode = ctx.attr("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        return ctx.ints("pads") or [0] * (2 * n)
    if mode == "VALID":
        return [0] * (2 * n)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise LpdcUnsupportedError(f"unknown auto_pad {mode!r}")
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else large)
        end.append(large if mode == "SAME_UPPER" else small)
    return begin + end


def _window(ctx: Ctx, x: Value, kernel: list[int] | None) -> tuple[list[int], list[int], list[int], list[int]]:
    n = x.type.rank - 2
    kernel = kernel or ctx.ints("kernel_shape")
    if not kernel or len(kernel) != n:
        raise LpdcUnsupportedError(f"kernel_shape {kernel} does not fit a {n}-D input")
    strides = ctx.ints("strides") or [1] * n
    dilations = ctx.ints("dilations") or [1] * n
    return kernel, strides, dilations, spatial_pads(ctx, x.type.shape[2:], kernel, strides, dilations)


def _lift(ctx: Ctx, v: Value) -> Value:
    """(N, C, L) -> (N, C, 1, L): a 1-D window becomes a 2-D one of unit height."""
    return ctx.op("unsqueeze", v, axes=[2])


def _pad2(pads: list[int]) -> list[int]:
    """ONNX [h0, w0, h1, w1] is the IR's [top, left, bottom, right] already; 1-D gets a zero height pad."""
    return pads if len(pads) == 4 else [0, pads[0], 0, pads[1]]


def _ones_front(v: list[int]) -> list[int]:
    return v if len(v) == 2 else [1] + v


@converter("Conv")
def _conv(ctx: Ctx) -> list[Value]:
    return [emit_conv(ctx, ctx.inp(0), ctx.inp(1), ctx.input(2), out=0)]


def emit_conv(ctx: Ctx, x: Value, w: Value, b: Value | None, out: int | None) -> Value:
    """A Conv (attributes read from the ONNX node) on IR values; also used by the quantized convs."""
    kernel, strides, dilations, pads = _window(ctx, x, list(w.type.shape[2:]))
    n = len(kernel)
    if n not in (1, 2):
        raise LpdcUnsupportedError(f"{n}-D convolution is not supported (1-D and 2-D are)")
    if n == 1:
        x, w = _lift(ctx, x), _lift(ctx, w)
    attrs = {"stride": _ones_front(strides), "pad": _pad2(pads), "dilation": _ones_front(dilations),
             "group": int(ctx.attr("group", 1))}
    if n == 2:
        return ctx.emit("conv", [x, w, b], attrs, out=out)[0]
    y = ctx.emit("conv", [x, w, b], attrs)[0]
    return ctx.op("squeeze", y, out=out, axes=[2])


@converter("ConvTranspose")
def _conv_transpose(ctx: Ctx) -> list[Value]:
    x, w, b = ctx.inp(0), ctx.inp(1), ctx.input(2)
    n = x.type.rank - 2
    if n not in (1, 2):
        raise LpdcUnsupportedError(f"{n}-D transposed convolution is not supported (1-D and 2-D are)")
    kernel = ctx.ints("kernel_shape") or list(w.type.shape[2:])
    strides = ctx.ints("strides") or [1] * n
    dilations = ctx.ints("dilations") or [1] * n
    out_pad = ctx.ints("output_padding") or [0] * n
    pads = ctx.ints("pads") or [0] * (2 * n)
    out_shape = ctx.ints("output_shape")
    mode = ctx.attr("auto_pad", "NOTSET")
    if out_shape or mode in ("SAME_UPPER", "SAME_LOWER"):
        sizes = x.type.shape[2:]
        targets = out_shape[-n:] if out_shape else [d * s for d, s in zip(sizes, strides, strict=True)]
        pads, out_pad = _transpose_pads(sizes, kernel, strides, dilations, out_pad, targets, mode)
    elif mode == "VALID":
        pads = [0] * (2 * n)
    if n == 1:
        x, w = _lift(ctx, x), _lift(ctx, w)
    attrs = {"stride": _ones_front(strides), "pad": _pad2(pads), "dilation": _ones_front(dilations),
             "group": int(ctx.attr("group", 1)), "output_padding": out_pad if n == 2 else [0] + out_pad}
    if n == 1:
        y = ctx.emit("conv_transpose", [x, w, b], attrs)[0]
        return [ctx.op("squeeze", y, out=0, axes=[2])]
    return [ctx.emit("conv_transpose", [x, w, b], attrs, out=0)[0]]


def _transpose_pads(sizes: tuple[int, ...], kernel: list[int], strides: list[int], dilations: list[int],
                    out_pad: list[int], targets: list[int], mode: str) -> tuple[list[int], list[int]]:
    """Pads (and extra output padding) that make a transposed convolution produce `targets`."""
    begin, end, extra = [], [], []
    for size, k, s, d, op, t in zip(sizes, kernel, strides, dilations, out_pad, targets, strict=True):
        total = s * (size - 1) + op + (k - 1) * d + 1 - t
        if total < 0:  # the requested output is larger than the full scatter: zero rows at the end
            begin.append(0)
            end.append(0)
            extra.append(op - total)
            continue
        small, large = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else large)
        end.append(large if mode == "SAME_UPPER" else small)
        extra.append(op)
    return begin + end, extra


@converter("Gemm")
def _gemm(ctx: Ctx) -> list[Value]:
    a, b, c = ctx.inp(0), ctx.inp(1), ctx.input(2)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    ta, tb = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    fc = _as_fully_connected(ctx, a, b, c, alpha, beta, ta, tb)
    if fc is not None:
        return [fc]
    return [ctx.op("gemm", a, b, c, out=0, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb)]


def _as_fully_connected(ctx: Ctx, a: Value, b: Value, c: Value | None, alpha: float, beta: float, ta: bool,
                        tb: bool) -> Value | None:
    """y = a @ W.T + bias with constant W and a per-column bias: the fully-connected pattern."""
    w = ctx.const(1)
    if ta or w is None or a.type.rank != 2 or w.ndim != 2 or not a.type.dtype.startswith("f"):
        return None
    n = w.shape[0] if tb else w.shape[1]
    bias = None if c is None else ctx.const(2)
    if c is not None and (bias is None or bias.size != n or bias.shape not in ((n,), (1, n))):
        return None
    weight = b
    if not tb or alpha != 1.0:
        weight = ctx.constant((w if tb else w.T) * np.asarray(alpha, w.dtype), "weight")
    bias_v = c
    if c is not None and (bias.ndim != 1 or beta != 1.0):
        bias_v = ctx.constant(bias.reshape(-1) * np.asarray(beta, bias.dtype), "bias")
    return ctx.op("fully_connected", a, weight, bias_v, out=0)


@converter("MatMul")
def _matmul(ctx: Ctx) -> list[Value]:
    return [ctx.op("matmul", ctx.inp(0), ctx.inp(1), out=0)]


@converter("BatchNormalization")
def _batch_norm(ctx: Ctx) -> list[Value | None]:
    x, scale, bias, mean, var = (ctx.inp(i) for i in range(5))
    eps = float(ctx.attr("epsilon", 1e-5))
    if ctx.opset < 9 and int(ctx.attr("spatial", 1)) == 0:
        raise LpdcUnsupportedError("BatchNormalization with spatial=0 is not supported")
    if int(ctx.attr("training_mode", 0)):
        return _batch_norm_training(ctx, x, scale, bias, mean, var, eps)
    return [ctx.op("batch_norm", x, scale, bias, mean, var, out=0, eps=eps)]


def _batch_norm_training(ctx: Ctx, x: Value, scale: Value, bias: Value, mean: Value, var: Value,
                         eps: float) -> list[Value | None]:
    """Normalise with the batch's statistics; running stats = old * momentum + batch * (1 - momentum)."""
    momentum = float(ctx.attr("momentum", 0.9))
    axes = [0] + list(range(2, x.type.rank))
    shape = [1, x.type.shape[1]] + [1] * (x.type.rank - 2)
    mu = ctx.op("reduce_mean", x, axes=axes, keepdims=True)
    centred = ctx.op("sub", x, mu)
    sigma2 = ctx.op("reduce_mean", ctx.op("mul", centred, centred), axes=axes, keepdims=True)
    eps_v = ctx.constant(np.asarray(eps, np.float32).astype(_np(x)), "eps")
    inv = ctx.op("reciprocal", ctx.op("sqrt", ctx.op("add", sigma2, eps_v)))
    y = ctx.op("mul", centred, ctx.op("mul", inv, ctx.op("reshape", scale, shape=shape)))
    y = ctx.op("add", y, ctx.op("reshape", bias, shape=shape), out=0)
    m = ctx.constant(np.asarray(momentum).astype(_np(x)), "momentum")
    m1 = ctx.constant(np.asarray(1 - momentum).astype(_np(x)), "one_minus_momentum")
    outs: list[Value | None] = [y]
    for i, (old, batch) in enumerate(((mean, mu), (var, sigma2)), start=1):
        if not ctx.output_used(i):
            outs.append(None)
            continue
        flat = ctx.op("reshape", batch, shape=[x.type.shape[1]])
        outs.append(ctx.op("add", ctx.op("mul", old, m), ctx.op("mul", flat, m1), out=i))
    return outs


def _np(v: Value) -> np.dtype:
    from ..ir import dtypes

    return dtypes.to_numpy(v.type.dtype)


@converter("MaxPool", "AveragePool")
def _pool(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    if ctx.output_used(1):
        raise LpdcUnsupportedError("MaxPool's Indices output is not supported")
    kernel, strides, dilations, pads = _window(ctx, x, None)
    n = len(kernel)
    op = "max_pool" if ctx.op_type == "MaxPool" else "avg_pool"
    flags = {"ceil_mode": bool(ctx.attr("ceil_mode", 0)), "count_include_pad": bool(ctx.attr("count_include_pad", 0))}
    if n == 2:
        attrs = {"kernel": kernel, "stride": strides, "pad": pads, "dilation": dilations, **flags}
        return [ctx.emit(op, [x], attrs, out=0)[0]]
    if n == 1:
        attrs = {"kernel": [1] + kernel, "stride": [1] + strides, "pad": _pad2(pads), "dilation": [1] + dilations,
                 **flags}
        y = ctx.emit(op, [_lift(ctx, x)], attrs)[0]
        return [ctx.op("squeeze", y, out=0, axes=[2])]
    if n == 3:
        return [_pool3d(ctx, op, x, kernel, strides, dilations, pads, flags)]
    raise LpdcUnsupportedError(f"{n}-D pooling is not supported")


def _pool3d(ctx: Ctx, op: str, x: Value, kernel: list[int], strides: list[int], dilations: list[int],
            pads: list[int], flags: dict[str, bool]) -> Value:
    """A 3-D pool as a height-width pool on (N, C*D, H, W) then a depth pool on (N, C, D, Ho*Wo)."""
    n, c, d, h, w = x.type.shape
    hw = ctx.op("reshape", x, shape=[n, c * d, h, w])
    hw = ctx.emit(op, [hw], {"kernel": kernel[1:], "stride": strides[1:], "dilation": dilations[1:],
                             "pad": [pads[1], pads[2], pads[4], pads[5]], **flags})[0]
    ho, wo = hw.type.shape[2:]
    dd = ctx.op("reshape", hw, shape=[n, c, d, ho * wo])
    dd = ctx.emit(op, [dd], {"kernel": [kernel[0], 1], "stride": [strides[0], 1], "dilation": [dilations[0], 1],
                             "pad": [pads[0], 0, pads[3], 0], **flags})[0]
    return ctx.op("reshape", dd, out=0, shape=[n, c, dd.type.shape[2], ho, wo])


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    is_avg = ctx.op_type == "GlobalAveragePool"
    if x.type.rank == 4:
        return [ctx.op("global_avg_pool" if is_avg else "global_max_pool", x, out=0)]
    axes = list(range(2, x.type.rank))
    return [ctx.op("reduce_mean" if is_avg else "reduce_max", x, out=0, axes=axes, keepdims=True)]


@converter("LRN")
def _lrn(ctx: Ctx) -> list[Value]:
    size = int(ctx.attr("size"))
    attrs = {"size": size, "alpha": float(ctx.attr("alpha", 1e-4)), "beta": float(ctx.attr("beta", 0.75)),
             "bias": float(ctx.attr("bias", 1.0))}
    return [ctx.emit("lrn", [ctx.inp(0)], attrs, out=0)[0]]

