"""Converters of Caffe's input, activation and data-movement layers: Input, DummyData, data layers,
ReLU, PReLU-free activations (Sigmoid, TanH, ELU, AbsVal, BNLL, Power, Exp, Clip), Eltwise, Concat,
Slice, Split, Flatten, Reshape, Softmax, Dropout and Crop."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import LpdcTypeError, LpdcUnsupportedError
from ...ir import Value
from . import layers_ssd  # noqa: F401  (registers the SSD converters)
from .context import Ctx, converter
from .layers_nn import canonical_axis
from .schema import enum_name
from .tables import DATA_LAYERS


# ---- inputs ----------------------------------------------------------------------------------
@converter("Input")
def _input(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    shapes = [list(s.dim) for s in layer.input_param.shape]
    if len(shapes) not in (0, 1, len(layer.top)):
        raise ctx.error(LpdcTypeError, f"{len(shapes)} `shape` blocks for {len(layer.top)} tops "
                                       "(give 1 or one per top)")
    return [ctx.add_input(i, shapes[0] if len(shapes) == 1 else shapes[i] if shapes else None, skip_unused=False)
            for i in range(len(layer.top))]


@converter("DummyData")
def _dummy_data(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    """Benchmark nets feed constant data from DummyData; at inference it is the net's input."""
    p = layer.dummy_data_param
    n = len(layer.top)
    if p.shape:
        shapes = [list(s.dim) for s in p.shape]
    else:
        legacy = [list(p.num), list(p.channels), list(p.height), list(p.width)]
        if any(len(v) not in (1, n) for v in legacy):
            raise ctx.error(LpdcTypeError, "num/channels/height/width need 1 value or one per top")
        shapes = [[v[0] if len(v) == 1 else v[i] for v in legacy] for i in range(n)]
    if len(shapes) not in (1, n):
        raise ctx.error(LpdcTypeError, f"{len(shapes)} shapes for {n} tops (give 1 or one per top)")
    return [ctx.add_input(i, shapes[0] if len(shapes) == 1 else shapes[i]) for i in range(n)]


def _data_layer(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    """Training data layers: each used top becomes an input whose shape must come from `shapes=`."""
    return [ctx.add_input(i, None) for i in range(len(layer.top))]


for _t in DATA_LAYERS:
    converter(_t)(_data_layer)


# ---- activations -----------------------------------------------------------------------------
@converter("ReLU")
def _relu(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    slope = layer.relu_param.negative_slope
    if slope:
        return [ctx.emit("leaky_relu", bottoms[:1], alpha=slope)]
    return [ctx.emit("relu", bottoms[:1])]


_UNARY = {"Sigmoid": "sigmoid", "TanH": "tanh", "AbsVal": "abs", "BNLL": "softplus"}


@converter(*_UNARY)
def _unary(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    return [ctx.emit(_UNARY[layer.type], bottoms[:1])]


@converter("ELU")
def _elu(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    return [ctx.emit("elu", bottoms[:1], alpha=layer.elu_param.alpha)]


@converter("Power")
def _power(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.power_param
    return [ctx.emit("power", bottoms[:1], power=p.power, scale=p.scale, shift=p.shift)]


@converter("Exp")
def _exp(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    """y = base^(shift + scale*x) = exp(ln(base)*shift + ln(base)*scale*x); base -1 means e."""
    p = layer.exp_param
    if p.base != -1 and p.base <= 0:
        raise ctx.error(LpdcTypeError, f"Exp `base` must be positive (or -1 for e), got {p.base}")
    ln_base = 1.0 if p.base == -1 else math.log(p.base)
    x = bottoms[0]
    if ln_base * p.scale != 1 or p.shift != 0:
        x = ctx.emit("power", [x], top=None, power=1.0, scale=ln_base * p.scale, shift=ln_base * p.shift)
    return [ctx.emit("exp", [x])]


@converter("Clip")
def _clip(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.clip_param
    return [ctx.emit("clip", bottoms[:1], min=p.min, max=p.max)]


# ---- combining and splitting -------------------------------------------------------------------
_ELTWISE = {"SUM": "sum", "PROD": "prod", "MAX": "max"}


@converter("Eltwise")
def _eltwise(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.eltwise_param
    op = _ELTWISE[enum_name(p, "operation")]
    coeffs = list(p.coeff)
    if coeffs and op != "sum":
        raise ctx.error(LpdcTypeError, "Eltwise `coeff` applies only to operation SUM")
    if coeffs and len(coeffs) != len(bottoms):
        raise ctx.error(LpdcTypeError, f"Eltwise takes one `coeff` per bottom: {len(coeffs)} for {len(bottoms)}")
    shapes = {v.type.shape for v in bottoms}
    if len(shapes) != 1:
        raise ctx.error(LpdcTypeError, f"Eltwise bottoms differ in shape: {[list(s) for s in shapes]}")
    if all(c == 1 for c in coeffs):
        coeffs = []
    return [ctx.emit("eltwise", bottoms, op=op, coeffs=coeffs)]


@converter("Concat")
def _concat(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.concat_param
    rank = bottoms[0].type.rank
    axis = p.concat_dim if p.HasField("concat_dim") else canonical_axis(ctx, p.axis, rank)
    if len(bottoms) == 1:
        return [bottoms[0]]
    return [ctx.emit("concat", bottoms, axis=axis)]


@converter("Slice")
def _slice(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.slice_param
    x = bottoms[0]
    axis = p.slice_dim if p.HasField("slice_dim") else canonical_axis(ctx, p.axis, x.type.rank)
    dim, n = x.type.shape[axis], len(layer.top)
    points = list(p.slice_point)
    if points:
        if len(points) != n - 1 or points != sorted(points) or points[-1] > dim:
            raise ctx.error(LpdcTypeError, f"`slice_point` {points} must be {n - 1} increasing cuts within {dim}")
        sizes = [b - a for a, b in zip([0] + points, points + [dim], strict=True)]
    else:
        if dim % n:
            raise ctx.error(LpdcTypeError, f"cannot slice axis {axis} of size {dim} into {n} equal parts")
        sizes = [dim // n] * n
    if n == 1:
        return [x]
    return list(ctx.emit_multi("split", [x], axis=axis, sizes=sizes))


@converter("Split")
def _split(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    """Caffe's Split copies a blob to several tops; in SSA form they are all the same value."""
    return [bottoms[0]] * len(layer.top)


# ---- shapes ------------------------------------------------------------------------------------
@converter("Flatten")
def _flatten(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    x = bottoms[0]
    shape = x.type.shape
    axis = canonical_axis(ctx, layer.flatten_param.axis, x.type.rank)
    end = canonical_axis(ctx, layer.flatten_param.end_axis, x.type.rank, "end_axis")
    if end < axis:
        raise ctx.error(LpdcTypeError, f"`end_axis` {end} is before `axis` {axis}")
    out = list(shape[:axis]) + [int(np.prod(shape[axis:end + 1]))] + list(shape[end + 1:])
    if axis == 1 and end == x.type.rank - 1:
        return [ctx.emit("flatten", [x], axis=1)]
    return [ctx.emit("reshape", [x], shape=out)]


def caffe_reshape(ctx: Ctx, in_shape: tuple[int, ...], spec: list[int], axis: int, num_axes: int) -> list[int]:
    """ReshapeLayer's output shape: `spec` replaces axes [axis, axis+num_axes); 0 copies, -1 infers."""
    rank = len(in_shape)
    start = axis if axis >= 0 else rank + axis + 1
    end = rank if num_axes == -1 else start + num_axes
    if not (0 <= start <= rank and start <= end <= rank):
        raise ctx.error(LpdcTypeError, f"`axis` {axis} / `num_axes` {num_axes} do not fit rank {rank}")
    mid = []
    for i, d in enumerate(spec):
        if d == 0:
            if start + i >= rank:
                raise ctx.error(LpdcTypeError, f"dim 0 at position {i} copies an input axis that does not exist")
            d = in_shape[start + i]
        mid.append(d)
    out = list(in_shape[:start]) + mid + list(in_shape[end:])
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise ctx.error(LpdcTypeError, f"bad reshape `shape` {spec}: at most one -1 and no other negatives")
    total, known = int(np.prod(in_shape)), int(np.prod([d for d in out if d != -1]))
    if -1 in out:
        if known == 0 or total % known:
            raise ctx.error(LpdcTypeError, f"cannot reshape {list(in_shape)} to {spec}")
        out[out.index(-1)] = total // known
    if int(np.prod(out)) != total:
        raise ctx.error(LpdcTypeError, f"cannot reshape {list(in_shape)} ({total} values) to {out}")
    return out


@converter("Reshape")
def _reshape(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.reshape_param
    x = bottoms[0]
    out = caffe_reshape(ctx, x.type.shape, list(p.shape.dim), p.axis, p.num_axes)
    return [ctx.emit("reshape", [x], shape=out)]


@converter("Softmax")
def _softmax(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    axis = canonical_axis(ctx, layer.softmax_param.axis, bottoms[0].type.rank)
    return [ctx.emit("softmax", bottoms[:1], axis=axis)]


@converter("Dropout")
def _dropout(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    """Identity at inference: Caffe scales by 1/(1-ratio) while training, not at test time."""
    return [ctx.emit("dropout", bottoms[:1], ratio=layer.dropout_param.dropout_ratio)]


@converter("Crop")
def _crop(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    """Crop axes from `axis` on to the second bottom's shape, starting at `offset` (one or per axis)."""
    if len(bottoms) != 2:
        raise ctx.error(LpdcTypeError, "Crop takes two bottoms (the blob and the reference shape)")
    x, ref = bottoms
    rank = x.type.rank
    axis = canonical_axis(ctx, layer.crop_param.axis, rank)
    offsets = list(layer.crop_param.offset)
    if len(offsets) not in (0, 1, rank - axis):
        raise ctx.error(LpdcTypeError, f"`offset` needs 0, 1 or {rank - axis} values, got {len(offsets)}")
    starts, ends, axes = [], [], []
    for i in range(axis, rank):
        off = 0 if not offsets else offsets[0] if len(offsets) == 1 else offsets[i - axis]
        size = ref.type.shape[i]
        if off + size > x.type.shape[i]:
            raise ctx.error(LpdcTypeError, f"axis {i}: offset {off} + size {size} exceeds the input's "
                                           f"{x.type.shape[i]}")
        starts.append(off)
        ends.append(off + size)
        axes.append(i)
    return [ctx.emit("slice", [x], starts=starts, ends=ends, axes=axes)]


@converter("Threshold", "ArgMax", "MVN", "Im2col", "Python")
def _unsupported(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    raise ctx.error(LpdcUnsupportedError, f"layer type '{layer.type}' is known but not supported by lpdc yet")
