"""ONNX converters whose parameters shape the output: Reshape, Squeeze, Unsqueeze, Slice, Split,
Pad, Resize and Upsample.

Opsets moved these parameters from attributes to inputs over time (Slice at 10, Pad at 11,
Squeeze/Unsqueeze/Split at 13, Resize's roi/scales/sizes...); both forms are read here, and the
input forms must be constants (or fold to constants at import).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import LpdcUnsupportedError
from ..ir import Value
from .onnx_context import Ctx, converter


@converter("Reshape", static=(1,))
def _reshape(ctx: Ctx) -> list[Value]:
    shape = ctx.ints("shape") if ctx.opset < 5 else ctx.static_ints(1, "shape")
    if shape is None:
        raise LpdcUnsupportedError("Reshape needs a shape")
    return [ctx.op("reshape", ctx.inp(0), out=0, shape=shape, allowzero=bool(ctx.attr("allowzero", 0)))]


def _axes(ctx: Ctx, since: int) -> list[int] | None:
    return ctx.static_ints(1, "axes") if ctx.opset >= since else ctx.ints("axes")


@converter("Squeeze", static=(1,))
def _squeeze(ctx: Ctx) -> list[Value]:
    return [ctx.op("squeeze", ctx.inp(0), out=0, axes=_axes(ctx, 13) or [])]


@converter("Unsqueeze", static=(1,))
def _unsqueeze(ctx: Ctx) -> list[Value]:
    axes = _axes(ctx, 13)
    if not axes:
        raise LpdcUnsupportedError("Unsqueeze needs axes")
    return [ctx.op("unsqueeze", ctx.inp(0), out=0, axes=axes)]


@converter("Slice", static=(1, 2, 3, 4))
def _slice(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    if ctx.opset < 10:
        starts, ends, axes, steps = ctx.ints("starts"), ctx.ints("ends"), ctx.ints("axes"), None
    else:
        starts, ends = ctx.static_ints(1, "starts"), ctx.static_ints(2, "ends")
        axes, steps = ctx.static_ints(3, "axes"), ctx.static_ints(4, "steps")
    if starts is None or ends is None:
        raise LpdcUnsupportedError("Slice needs starts and ends")
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    return [ctx.op("slice", x, out=0, starts=starts, ends=ends, axes=axes, steps=steps)]


@converter("Split", static=(1,))
def _split(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    axis = int(ctx.attr("axis", 0))
    axis = axis + x.type.rank if axis < 0 else axis
    sizes = ctx.static_ints(1, "split") if ctx.opset >= 13 else ctx.ints("split")
    if not sizes:
        n = int(ctx.attr("num_outputs", ctx.n_outputs))
        dim = x.type.shape[axis]
        chunk = -(-dim // n)  # equal parts; from opset 18 the last one may be smaller
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    return ctx.emit("split", [x], {"axis": axis, "sizes": sizes}, out=0, n_out=len(sizes))


@converter("Pad", static=(1, 2, 3))
def _pad(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    rank = x.type.rank
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads = ctx.ints("pads") or ctx.ints("paddings") or [0] * 2 * rank
        value = float(ctx.attr("value", 0.0))
    else:
        pads = ctx.static_ints(1, "pads") or [0] * 2 * rank
        cv = ctx.static(2, "constant_value")
        value = 0.0 if cv is None or cv.size == 0 else float(np.asarray(cv).reshape(-1)[0])
        axes = ctx.static_ints(3, "axes")
        if axes is not None:
            full = [0] * 2 * rank
            for i, a in enumerate(axes):
                a = a + rank if a < 0 else a
                full[a], full[a + rank] = pads[i], pads[i + len(axes)]
            pads = full
    return [ctx.op("pad", x, out=0, pads=pads, mode=mode, value=value)]


@converter("Resize", static=(1, 2, 3))
def _resize(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    rank = x.type.rank
    if ctx.opset < 11:
        scales, sizes, roi = ctx.static(1, "scales"), None, None
        coord, nearest = "asymmetric", "floor"
    else:
        roi, scales, sizes = ctx.static(1, "roi"), ctx.static(2, "scales"), ctx.static(3, "sizes")
        coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
        nearest = ctx.attr("nearest_mode", "round_prefer_floor")
    scales = None if scales is None or scales.size == 0 else [float(s) for s in scales.reshape(-1)]
    sizes = None if sizes is None or sizes.size == 0 else [int(s) for s in sizes.reshape(-1)]
    axes = ctx.ints("axes") or list(range(rank))
    axes = [a + rank if a < 0 else a for a in axes]
    full_scales, full_sizes = _resize_geometry(ctx, x.type.shape, axes, scales, sizes)
    attrs = {"scales": full_scales, "sizes": full_sizes, "mode": ctx.attr("mode", "nearest"),
             "coordinate_transformation_mode": coord, "nearest_mode": nearest,
             "cubic_coeff_a": float(ctx.attr("cubic_coeff_a", -0.75)),
             "exclude_outside": bool(ctx.attr("exclude_outside", 0)),
             "extrapolation_value": float(ctx.attr("extrapolation_value", 0.0)),
             "antialias": bool(ctx.attr("antialias", 0)),
             "roi": _full_roi(roi, axes, rank) if coord == "tf_crop_and_resize" else []}
    return [ctx.emit("resize", [x], attrs, out=0)[0]]


def _resize_geometry(ctx: Ctx, shape: tuple[int, ...], axes: list[int], scales: list[float] | None,
                     sizes: list[int] | None) -> tuple[list[float], list[int]]:
    """Per-axis coordinate scales and output sizes, following ONNX's rules for each input form."""
    rank = len(shape)
    full_scales = [1.0] * rank
    full_sizes = list(shape)
    if scales is not None:
        for a, s in zip(axes, scales, strict=True):
            full_scales[a] = s
            full_sizes[a] = int(math.floor(shape[a] * s))
        return full_scales, full_sizes
    if sizes is None:
        raise LpdcUnsupportedError("Resize needs scales or sizes")
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    ratios = [sz / shape[a] for a, sz in zip(axes, sizes, strict=True)]
    if policy == "stretch":
        for a, sz, r in zip(axes, sizes, ratios, strict=True):
            full_scales[a], full_sizes[a] = r, sz
        return full_scales, full_sizes
    scale = min(ratios) if policy == "not_larger" else max(ratios)
    for a in axes:
        full_scales[a] = scale
        full_sizes[a] = int(scale * shape[a] + 0.5)
    return full_scales, full_sizes


def _full_roi(roi: np.ndarray | None, axes: list[int], rank: int) -> list[float]:
    if roi is None or roi.size == 0:
        raise LpdcUnsupportedError("tf_crop_and_resize needs a roi")
    r = [float(v) for v in roi.reshape(-1)]
    full = [0.0] * rank + [1.0] * rank
    for i, a in enumerate(axes):
        full[a], full[a + rank] = r[i], r[i + len(axes)]
    return full


@converter("Upsample", static=(1,))
def _upsample(ctx: Ctx) -> list[Value]:
    x = ctx.inp(0)
    data = ctx.static(1, "scales") if ctx.opset >= 9 else np.asarray(ctx.attr("scales"), np.float32)
    scales = [float(s) for s in np.asarray(data).reshape(-1)]
    sizes = [int(math.floor(d * s)) for d, s in zip(x.type.shape, scales, strict=True)]
    mode = ctx.attr("mode", "nearest")
    attrs = {"scales": scales, "sizes": sizes, "mode": "linear" if mode in ("linear", "bilinear") else mode,
             "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    return [ctx.emit("resize", [x], attrs, out=0)[0]]
