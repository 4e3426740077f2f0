"""Reference prior_box and detection_output (Caffe SSD semantics) and resize."""

from __future__ import annotations

import math

import numpy as np

from ....errors import LpdcUnsupportedError
from ....ir.ops.detection import expanded_ratios
from . import kernel


@kernel("prior_box")
def _prior_box(node, ins, g):
    """Caffe SSD PriorBox: per cell, per min size a square box, then sqrt(min*max), then the ratios."""
    a = node.attrs
    ft, it = node.inputs[0].type, node.inputs[1].type
    fh, fw = (ft.shape[2], ft.shape[3]) if ft.effective_layout == "NCHW" else (ft.shape[1], ft.shape[2])
    ih, iw = (it.shape[2], it.shape[3]) if it.effective_layout == "NCHW" else (it.shape[1], it.shape[2])
    img_h, img_w = (a["img_size"][0] or ih, a["img_size"][1] or iw)
    step_h, step_w = (a["step"][0] or img_h / fh, a["step"][1] or img_w / fw)
    ratios = expanded_ratios(a["aspect_ratios"], a["flip"])
    sizes: list[tuple[float, float]] = []  # (box width, box height) per prior, in Caffe's order
    for k, mn in enumerate(a["min_sizes"]):
        sizes.append((mn, mn))
        if a["max_sizes"]:
            s = math.sqrt(mn * a["max_sizes"][k])
            sizes.append((s, s))
        for r in ratios[1:]:
            sizes.append((mn * math.sqrt(r), mn / math.sqrt(r)))
    bw = np.array([s[0] for s in sizes])
    bh = np.array([s[1] for s in sizes])
    cy = (np.arange(fh) + a["offset"]) * step_h
    cx = (np.arange(fw) + a["offset"]) * step_w
    cyy, cxx = np.meshgrid(cy, cx, indexing="ij")
    boxes = np.stack([(cxx[..., None] - bw / 2) / img_w, (cyy[..., None] - bh / 2) / img_h,
                      (cxx[..., None] + bw / 2) / img_w, (cyy[..., None] + bh / 2) / img_h], axis=-1)
    boxes = boxes.reshape(-1)
    if a["clip"]:
        boxes = np.clip(boxes, 0.0, 1.0)
    var = np.resize(np.asarray(a["variance"], np.float64), 4)
    variances = np.tile(var, boxes.size // 4)
    return [np.stack([boxes, variances])[None].astype(np.float32)]


@kernel("detection_output")
def _detection_output(node, ins, g):
    raise LpdcUnsupportedError("detection_output has no reference kernel yet", where=f"node '{node.name}'")


def _source_coords(out_len: int, in_len: int, scale: float, mode: str) -> np.ndarray:
    x = np.arange(out_len, dtype=np.float64)
    if mode == "asymmetric":
        return x / scale
    if mode == "align_corners":
        return x * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros(out_len)
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    return (x + 0.5) / scale - 0.5  # half_pixel


def _nearest(c: np.ndarray, mode: str) -> np.ndarray:
    if mode == "floor":
        return np.floor(c)
    if mode == "ceil":
        return np.ceil(c)
    frac_half = np.isclose(c - np.floor(c), 0.5)
    if mode == "round_prefer_ceil":
        return np.where(frac_half, np.ceil(c), np.round(c))
    return np.where(frac_half, np.floor(c), np.round(c))  # round_prefer_floor


@kernel("resize")
def _resize(node, ins, g):
    """Separable per-axis resize (nearest or linear) with ONNX coordinate transformations."""
    a = node.attrs
    x = ins[0]
    y = x.astype(np.float64)
    out_shape = node.outputs[0].type.shape
    for axis, (n_in, n_out) in enumerate(zip(x.shape, out_shape, strict=True)):
        if n_in == n_out and (not a["scales"] or a["scales"][axis] == 1):
            continue
        scale = a["scales"][axis] if a["scales"] else n_out / n_in
        c = _source_coords(n_out, n_in, scale, a["coordinate_transformation_mode"])
        if a["mode"] == "nearest":
            idx = np.clip(_nearest(c, a["nearest_mode"]).astype(np.int64), 0, n_in - 1)
            y = np.take(y, idx, axis=axis)
            continue
        c = np.clip(c, 0, n_in - 1)
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = (c - lo).reshape([-1 if i == axis else 1 for i in range(x.ndim)])
        y = np.take(y, lo, axis=axis) * (1 - frac) + np.take(y, hi, axis=axis) * frac
    return [y.astype(x.dtype)]
