"""Reference resize (ONNX Resize semantics): nearest, linear and cubic, every coordinate
transformation mode, antialiasing, exclude_outside and tf_crop_and_resize extrapolation.

Resize is separable, so each axis is resampled on its own: for every output position the source
coordinate x gives a ratio r = x - floor(x) (1 when x is an integer, so the left pixel is
preferred) and a few taps around x with weights from the mode's kernel; taps beyond the input
clamp to the edge (or are dropped and the weights renormalised with exclude_outside).
"""

from __future__ import annotations

import math

import numpy as np

from . import kernel


def _source_coords(mode: str, n_out: int, n_in: int, scale: float,
                   roi: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Source coordinate of every output index, and (tf_crop_and_resize only) which fall outside."""
    y = np.arange(n_out, dtype=np.float64)
    width = scale * n_in  # the real-valued output length the transformation is defined with
    if mode == "asymmetric":
        return y / scale, None
    if mode == "align_corners":
        return (np.zeros(n_out) if width == 1 else y * (n_in - 1) / (width - 1)), None
    if mode == "pytorch_half_pixel":
        return (np.full(n_out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5), None
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale, None
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5, None
    if mode == "tf_crop_and_resize":
        assert roi is not None
        lo, hi = roi
        x = (np.full(n_out, (hi - lo) * (n_in - 1) / 2) if width == 1
             else y * (hi - lo) * (n_in - 1) / (width - 1)) + lo * (n_in - 1)
        return x, (x < 0) | (x > n_in - 1)
    return (y + 0.5) / scale - 0.5, None  # half_pixel


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel at distance |t|."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _weights(attrs: dict, ratio: np.ndarray, scale: float) -> np.ndarray:
    """(n_out, taps) interpolation weights; tap j sits at offset j - taps/2 + 1 from floor(x)."""
    r = ratio[:, None]
    mode = attrs["mode"]
    if mode == "nearest":
        nm = attrs["nearest_mode"]
        right = {"round_prefer_floor": r > 0.5, "round_prefer_ceil": r >= 0.5, "floor": r > 1.5,
                 "ceil": r >= -1.0}[nm] | (r == 1.0)
        return np.concatenate([~right, right], axis=1).astype(np.float64)
    down = min(scale, 1.0) if attrs["antialias"] else 1.0
    support = 1 if mode == "linear" else 2
    start = math.floor(-support / down) + 1  # the first tap's offset from floor(x) (0 or below)
    offsets = np.arange(start, 1 - start + 1, dtype=np.float64)  # symmetric, an even number of taps
    dist = (offsets[None, :] - r) * down
    w = np.clip(1 - np.abs(dist), 0, 1) if mode == "linear" else _cubic(dist, attrs["cubic_coeff_a"])
    if attrs["antialias"]:
        w = w / w.sum(axis=1, keepdims=True)
    return w


def _resample_axis(y: np.ndarray, axis: int, n_out: int, scale: float, attrs: dict,
                   roi: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray | None]:
    n_in = y.shape[axis]
    x, outside = _source_coords(attrs["coordinate_transformation_mode"], n_out, n_in, scale, roi)
    base = np.floor(x)
    ratio = np.where(x == base, 1.0, x - base)
    w = _weights(attrs, ratio, scale)
    taps = w.shape[1]
    # With ratio 1 at integer x, floor(x) - 1 is the "left" pixel and x itself the right one.
    left = np.where(x == base, base - 1, base).astype(np.int64)
    idx = left[:, None] + np.arange(taps)[None, :] - (taps // 2 - 1)
    if attrs["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    gathered = np.take(y, np.clip(idx, 0, n_in - 1), axis=axis)  # (..., n_out, taps, ...)
    shape = (1,) * axis + w.shape + (1,) * (y.ndim - axis - 1)
    return (gathered * w.reshape(shape)).sum(axis=axis + 1), outside


@kernel("resize")
def _resize(node, ins, g):
    a = node.attrs
    x = ins[0]
    out_shape = node.outputs[0].type.shape
    rank = x.ndim
    roi = a["roi"] or None
    y = x.astype(np.float64)
    masks: list[tuple[int, np.ndarray]] = []
    for axis, (n_in, n_out) in enumerate(zip(x.shape, out_shape, strict=True)):
        scale = a["scales"][axis] if a["scales"] else n_out / n_in
        axis_roi = (roi[axis], roi[axis + rank]) if roi else None
        if n_in == n_out and math.isclose(scale, 1.0) and (axis_roi is None or axis_roi == (0.0, 1.0)):
            continue
        y, outside = _resample_axis(y, axis, n_out, scale, a, axis_roi)
        if outside is not None:
            masks.append((axis, outside))
    for axis, outside in masks:  # tf_crop_and_resize: samples outside the input take the fill value
        y = np.where(outside.reshape((1,) * axis + (-1,) + (1,) * (rank - axis - 1)), a["extrapolation_value"], y)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    return [y.astype(x.dtype)]
