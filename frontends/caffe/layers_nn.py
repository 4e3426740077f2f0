"""Converters of Caffe's weighted and windowed layers: Convolution, Deconvolution, InnerProduct,
Pooling, LRN, BatchNorm, Scale, Bias, PReLU and SSD's Normalize."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ...errors import LpdcTypeError, LpdcUnsupportedError
from ...ir import Value
from .context import Ctx, converter
from .params import BlobSpec
from .schema import enum_name


def canonical_axis(ctx: Ctx, axis: int, rank: int, what: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
    if not -rank <= axis < rank:
        raise ctx.error(LpdcTypeError, f"`{what}` {axis} is out of range for a rank-{rank} input")
    return axis % rank


def _pair(ctx: Ctx, values: list[int], default: int, what: str) -> tuple[int, int]:
    if not values:
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise ctx.error(LpdcUnsupportedError, f"`{what}` has {len(values)} values: only 2-D windows are supported")


def conv_geometry(ctx: Ctx, p: Any) -> dict[str, tuple[int, int]]:
    """kernel, stride, pad, dilation as (h, w) pairs from ConvolutionParameter's two spellings."""
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        if p.kernel_size or not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise ctx.error(LpdcTypeError, "give either `kernel_size` or both `kernel_h` and `kernel_w`")
        kernel = (p.kernel_h, p.kernel_w)
    else:
        if not p.kernel_size:
            raise ctx.error(LpdcTypeError, "the layer needs `kernel_size` (or `kernel_h` and `kernel_w`)")
        kernel = _pair(ctx, list(p.kernel_size), 1, "kernel_size")
    if p.HasField("stride_h") or p.HasField("stride_w"):
        stride = (p.stride_h or 1, p.stride_w or 1)
    else:
        stride = _pair(ctx, list(p.stride), 1, "stride")
    if p.HasField("pad_h") or p.HasField("pad_w"):
        pad = (p.pad_h, p.pad_w)
    else:
        pad = _pair(ctx, list(p.pad), 0, "pad")
    dilation = _pair(ctx, list(p.dilation), 1, "dilation")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ctx.error(LpdcTypeError, f"kernel {kernel}, stride {stride} and dilation {dilation} must be >= 1")
    return {"kernel": kernel, "stride": stride, "pad": pad, "dilation": dilation}


def _check_nchw(ctx: Ctx, x: Value, axis: int = 1) -> None:
    if x.type.rank != 4 or axis != 1:
        raise ctx.error(LpdcUnsupportedError, f"only 2-D (NCHW) inputs with channel axis 1 are supported, got "
                                              f"shape {list(x.type.shape)} and axis {axis}")


def _channels(ctx: Ctx, x: Value, p: Any) -> tuple[int, int, int]:
    """(input channels, num_output, group), checked as Caffe's BaseConvolutionLayer does."""
    cin, cout, group = x.type.shape[1], p.num_output, p.group
    if cout < 1:
        raise ctx.error(LpdcTypeError, "the layer needs `num_output` >= 1")
    if group < 1 or cin % group or cout % group:
        raise ctx.error(LpdcTypeError, f"num_output {cout} and input channels {cin} must both be divisible by "
                                       f"group {group}")
    return cin, cout, group


@converter("Convolution")
def _convolution(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.convolution_param
    x = bottoms[0]
    _check_nchw(ctx, x, p.axis)
    geo = conv_geometry(ctx, p)
    cin, cout, group = _channels(ctx, x, p)
    kh, kw = geo["kernel"]
    specs = [BlobSpec((cout, cin // group, kh, kw), "weight", cin // group * kh * kw)]
    if p.bias_term:
        specs.append(BlobSpec((cout,), "bias"))
    blobs = ctx.blobs(specs)
    w = ctx.const(blobs[0], "weight")
    b = ctx.const(blobs[1], "bias") if p.bias_term else None
    (ph, pw) = geo["pad"]
    return [ctx.emit("conv", [x, w, b], stride=list(geo["stride"]), pad=[ph, pw, ph, pw],
                     dilation=list(geo["dilation"]), group=group)]


@converter("Deconvolution")
def _deconvolution(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.convolution_param
    x = bottoms[0]
    _check_nchw(ctx, x, p.axis)
    geo = conv_geometry(ctx, p)
    cin, cout, group = _channels(ctx, x, p)
    kh, kw = geo["kernel"]
    sh, sw = geo["stride"]
    # Each output pixel gathers about C_in/group * kh*kw / (sh*sw) products.
    fan_in = max(1, cin // group * kh * kw // (sh * sw))
    specs = [BlobSpec((cin, cout // group, kh, kw), "weight", fan_in)]
    if p.bias_term:
        specs.append(BlobSpec((cout,), "bias"))
    blobs = ctx.blobs(specs)
    w = ctx.const(blobs[0], "weight")
    b = ctx.const(blobs[1], "bias") if p.bias_term else None
    ph, pw = geo["pad"]
    return [ctx.emit("conv_transpose", [x, w, b], stride=[sh, sw], pad=[ph, pw, ph, pw],
                     dilation=list(geo["dilation"]), group=group)]


@converter("InnerProduct")
def _inner_product(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.inner_product_param
    x = bottoms[0]
    axis = canonical_axis(ctx, p.axis, x.type.rank)
    k, n = int(np.prod(x.type.shape[axis:])), p.num_output
    if n < 1:
        raise ctx.error(LpdcTypeError, "InnerProduct needs `num_output` >= 1")
    specs = [BlobSpec((k, n) if p.transpose else (n, k), "weight", k)]
    if p.bias_term:
        specs.append(BlobSpec((n,), "bias"))
    blobs = ctx.blobs(specs)
    w = ctx.const(blobs[0].T if p.transpose else blobs[0], "weight")
    b = ctx.const(blobs[1], "bias") if p.bias_term else None
    return [ctx.emit("fully_connected", [x, w, b], axis=axis)]


def caffe_pool_size(size: int, k: int, s: int, pad: int, ceil_mode: bool) -> int:
    """Caffe's PoolingLayer::Reshape output length (ceil or floor, then the pad clipping rule)."""
    room = size + 2 * pad - k
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if pad and (out - 1) * s >= size + pad:
        out -= 1
    return out


def _pool_geometry(ctx: Ctx, p: Any) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        kernel = (p.kernel_h, p.kernel_w)
    else:
        kernel = (p.kernel_size, p.kernel_size)
    stride = (p.stride_h, p.stride_w) if (p.HasField("stride_h") or p.HasField("stride_w")) else (p.stride,) * 2
    pad = (p.pad_h, p.pad_w) if (p.HasField("pad_h") or p.HasField("pad_w")) else (p.pad,) * 2
    return kernel, stride, pad


@converter("Pooling")
def _pooling(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.pooling_param
    x = bottoms[0]
    _check_nchw(ctx, x)
    method = enum_name(p, "pool")
    if method == "STOCHASTIC":
        raise ctx.error(LpdcUnsupportedError, "STOCHASTIC pooling (field `pool`) is not supported")
    kind = "max" if method == "MAX" else "avg"
    kernel, stride, pad = _pool_geometry(ctx, p)
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise ctx.error(LpdcTypeError, "`global_pooling` takes no kernel size")
        if pad != (0, 0) or stride != (1, 1):
            raise ctx.error(LpdcTypeError, "`global_pooling` needs pad 0 and stride 1")
        return [ctx.emit(f"global_{kind}_pool", [x])]
    if min(kernel) < 1 or min(stride) < 1:
        raise ctx.error(LpdcTypeError, f"pooling needs a kernel size and stride >= 1, got {kernel} and {stride}")
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise ctx.error(LpdcTypeError, f"pad {pad} must be smaller than the kernel {kernel}")
    ceil = p.ceil_mode if p.HasField("ceil_mode") else enum_name(p, "round_mode") == "CEIL"
    want = tuple(caffe_pool_size(x.type.shape[2 + i], kernel[i], stride[i], pad[i], ceil) for i in range(2))
    y = ctx.emit(f"{kind}_pool", [x], kernel=list(kernel), stride=list(stride), pad=[pad[0], pad[1]] * 2,
                 ceil_mode=ceil, count_include_pad=True)
    if y.type.shape[2:] != want:
        raise ctx.error(LpdcUnsupportedError, f"Caffe's output size {list(want)} has a window that starts past "
                                              f"the input; lpdc computes {list(y.type.shape[2:])}")
    return [y]


@converter("LRN")
def _lrn(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.lrn_param
    _check_nchw(ctx, bottoms[0])
    if p.local_size % 2 == 0:
        raise ctx.error(LpdcTypeError, f"LRN `local_size` must be odd, got {p.local_size}")
    within = enum_name(p, "norm_region") == "WITHIN_CHANNEL"
    # WITHIN_CHANNEL is built in Caffe from avg-pooling and Power(shift=1): `k` is ignored there.
    return [ctx.emit("lrn", [bottoms[0]], size=p.local_size, alpha=p.alpha, beta=p.beta,
                     bias=1.0 if within else p.k, region="within" if within else "across")]


@converter("BatchNorm")
def _batch_norm(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.batch_norm_param
    x = bottoms[0]
    if x.type.rank < 2:
        raise ctx.error(LpdcTypeError, f"BatchNorm needs rank >= 2, got {list(x.type.shape)}")
    if p.HasField("use_global_stats") and not p.use_global_stats:
        warnings.warn(f"{ctx.where()}: use_global_stats is false (batch statistics); lpdc uses the stored "
                      "statistics, as Caffe's TEST phase does by default", stacklevel=2)
    c = x.type.shape[1]
    mean, var, factor = ctx.blobs([BlobSpec((c,), "mean"), BlobSpec((c,), "var"), BlobSpec((1,), "bn_factor")])
    # Caffe stores running sums times a moving-average factor s; the statistics are sum / s.
    s = float(factor.reshape(-1)[0])
    inv = 0.0 if s == 0 else 1.0 / s
    ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)
    ins = [x, ctx.const(ones, "scale"), ctx.const(zeros, "bias"), ctx.const(mean * inv, "mean"),
           ctx.const(var * inv, "var")]
    return [ctx.emit("batch_norm", ins, eps=p.eps)]


def _param_shape(ctx: Ctx, x: Value, axis: int, num_axes: int) -> tuple[int, int, tuple[int, ...]]:
    rank = x.type.rank
    axis = canonical_axis(ctx, axis, rank)
    if num_axes < -1 or (num_axes >= 0 and axis + num_axes > rank):
        raise ctx.error(LpdcTypeError, f"`num_axes` {num_axes} from axis {axis} does not fit rank {rank}")
    end = rank if num_axes == -1 else axis + num_axes
    return axis, end, tuple(x.type.shape[axis:end])


def _affine(ctx: Ctx, layer: Any, bottoms: list[Value], op: str, p: Any) -> Value:
    """Scale (op "scale") or Bias: learned blob, or the second bottom as the factor/addend."""
    x = bottoms[0]
    if len(bottoms) > 1:
        axis, _, shape = _param_shape(ctx, x, p.axis, bottoms[1].type.rank)
        other = bottoms[1]
        if op == "scale" and p.bias_term:
            (beta,) = ctx.blobs([BlobSpec(shape, "beta")])
            return ctx.emit("scale", [x, other, ctx.const(beta, "bias")], axis=axis)
        return ctx.emit(op, [x, other], axis=axis)
    axis, _, shape = _param_shape(ctx, x, p.axis, p.num_axes)
    if op == "bias":
        (b,) = ctx.blobs([BlobSpec(shape, "beta")])
        return ctx.emit("bias", [x, ctx.const(b, "bias")], axis=axis)
    specs = [BlobSpec(shape, "gamma")] + ([BlobSpec(shape, "beta")] if p.bias_term else [])
    blobs = ctx.blobs(specs)
    bias = ctx.const(blobs[1], "bias") if p.bias_term else None
    return ctx.emit("scale", [x, ctx.const(blobs[0], "scale"), bias], axis=axis)


@converter("Scale")
def _scale(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    return [_affine(ctx, layer, bottoms, "scale", layer.scale_param)]


@converter("Bias")
def _bias(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    return [_affine(ctx, layer, bottoms, "bias", layer.bias_param)]


@converter("PReLU")
def _prelu(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    x = bottoms[0]
    if x.type.rank < 2:
        raise ctx.error(LpdcTypeError, f"PReLU needs rank >= 2, got {list(x.type.shape)}")
    shared = layer.prelu_param.channel_shared
    c = x.type.shape[1]
    (slope,) = ctx.blobs([BlobSpec(() if shared else (c,), "slope")])
    # Broadcast NumPy-style over (C, 1, 1, ...) so the slope follows axis 1.
    shape = (1,) if shared else (c,) + (1,) * (x.type.rank - 2)
    return [ctx.emit("prelu", [x, ctx.const(slope.reshape(shape), "slope")])]


@converter("Normalize")
def _normalize(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.norm_param
    x = bottoms[0]
    _check_nchw(ctx, x)
    c = x.type.shape[1]
    (scale,) = ctx.blobs([BlobSpec(() if p.channel_shared else (c,), "norm_scale")])
    return [ctx.emit("normalize", [x, ctx.const(scale.reshape(-1), "scale")], across_spatial=p.across_spatial,
                     channel_shared=p.channel_shared, eps=p.eps)]


__all__ = ["canonical_axis", "caffe_pool_size", "conv_geometry"]
