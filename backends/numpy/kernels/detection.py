"""Reference prior_box and detection_output (Caffe SSD semantics); resize is in resize.py.

Both follow weiliu89/caffe (branch ssd): prior_box_layer.cpp and detection_output_layer.cpp with
bbox_util.cpp's DecodeBBox, ApplyNMSFast (stable sort, `score > threshold`, keep while IoU <=
threshold, adaptive eta) and JaccardOverlap.
"""

from __future__ import annotations

import math

import numpy as np

from ....ir.ops.detection import expanded_ratios
from . import kernel


@kernel("prior_box")
def _prior_box(node, ins, g):
    """Caffe SSD PriorBox: per cell, per min size a square box, then sqrt(min*max), then the ratios.

    Caffe reads each min/max size into an `int` before using it, so fractional sizes truncate.
    """
    a = node.attrs
    ft, it = node.inputs[0].type, node.inputs[1].type
    fh, fw = (ft.shape[2], ft.shape[3]) if ft.effective_layout == "NCHW" else (ft.shape[1], ft.shape[2])
    ih, iw = (it.shape[2], it.shape[3]) if it.effective_layout == "NCHW" else (it.shape[1], it.shape[2])
    img_h, img_w = (a["img_size"][0], a["img_size"][1]) if all(a["img_size"]) else (ih, iw)
    step_h, step_w = (a["step"][0], a["step"][1]) if all(a["step"]) else (img_h / fh, img_w / fw)
    ratios = expanded_ratios(a["aspect_ratios"], a["flip"])
    sizes: list[tuple[float, float]] = []  # (box width, box height) per prior, in Caffe's order
    for k, min_size in enumerate(a["min_sizes"]):
        mn = int(min_size)
        sizes.append((mn, mn))
        if a["max_sizes"]:
            s = math.sqrt(mn * int(a["max_sizes"][k]))
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


def decode_boxes(prior: np.ndarray, var: np.ndarray, loc: np.ndarray, code_type: str,
                 variance_in_target: bool) -> np.ndarray:
    """Caffe's DecodeBBox for every prior at once: (P, 4) priors, variances and offsets -> boxes."""
    v = np.ones_like(var) if variance_in_target else var
    if code_type == "corner":
        return prior + v * loc
    pw, ph = prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]
    if code_type == "corner_size":
        return prior + v * loc * np.stack([pw, ph, pw, ph], axis=1)
    cx = v[:, 0] * loc[:, 0] * pw + (prior[:, 0] + prior[:, 2]) / 2
    cy = v[:, 1] * loc[:, 1] * ph + (prior[:, 1] + prior[:, 3]) / 2
    w = np.exp(v[:, 2] * loc[:, 2]) * pw
    h = np.exp(v[:, 3] * loc[:, 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _box_size(b: np.ndarray) -> np.ndarray:
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.where((w < 0) | (h < 0), 0.0, w * h)


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (n, 4) with every box of `b` (m, 4) as (n, m): Caffe's JaccardOverlap,
    where boxes that do not intersect score 0 and invalid boxes have size 0."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (_box_size(a)[:, None] + _box_size(b)[None, :] - inter)
    return np.where(inter > 0, iou, 0.0)


_IOU_MATRIX_MAX = 2048  # candidates up to which one (n, n) IoU matrix is cheaper than row by row


def nms_fast(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
             eta: float, top_k: int) -> list[int]:
    """Caffe's ApplyNMSFast: indices kept for one class, best score first."""
    cand = np.nonzero(scores > score_threshold)[0]
    cand = cand[np.argsort(-scores[cand], kind="stable")]
    if top_k > -1:
        cand = cand[:top_k]
    matrix = jaccard(boxes[cand], boxes[cand]) if len(cand) <= _IOU_MATRIX_MAX else None
    kept: list[int] = []  # positions in cand
    threshold = nms_threshold
    for j in range(len(cand)):
        if kept:
            overlaps = matrix[j, kept] if matrix is not None else jaccard(boxes[cand[j:j + 1]], boxes[cand[kept]])
            if not np.all(overlaps <= threshold):
                continue
        kept.append(j)
        if eta < 1 and threshold > 0.5:
            threshold *= eta
    return [int(cand[j]) for j in kept]


def _detect_image(a: dict, loc: np.ndarray, conf: np.ndarray, prior: np.ndarray,
                  var: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per-class NMS then keep_top_k over all classes; returns (label, kept indices, boxes) by label."""
    classes, bg = a["num_classes"], a["background_label_id"]
    per_label: list[tuple[int, list[int], np.ndarray]] = []
    shared = decode_boxes(prior, var, loc[:, 0], a["code_type"], a["variance_encoded_in_target"]) \
        if a["share_location"] else None
    for c in range(classes):
        if c == bg:
            continue
        boxes = shared if shared is not None else decode_boxes(prior, var, loc[:, c], a["code_type"],
                                                               a["variance_encoded_in_target"])
        kept = nms_fast(boxes, conf[:, c], a["confidence_threshold"], a["nms_threshold"], a["eta"], a["top_k"])
        per_label.append((c, kept, boxes))
    total = sum(len(k) for _, k, _ in per_label)
    if a["keep_top_k"] > -1 and total > a["keep_top_k"]:
        pairs = [(conf[i, c], c, i) for c, kept, _ in per_label for i in kept]
        best = sorted(pairs, key=lambda t: -t[0])[:a["keep_top_k"]]
        per_label = [(c, [i for _, lc, i in best if lc == c], boxes) for c, _, boxes in per_label]
    return [(c, np.asarray(kept, np.int64), boxes) for c, kept, boxes in per_label]


@kernel("detection_output")
def _detection_output(node, ins, g):
    """Rows [image, label, score, xmin, ymin, xmax, ymax] in Caffe's order (by image, label ascending,
    then score); the rest of the static output is -1. With no detection at all, Caffe's placeholder
    rows [i, -1, ...] (one per image) come first, as it writes them."""
    a = node.attrs
    loc, conf, prior = (x.astype(np.float64) for x in ins)
    num, num_priors, classes = loc.shape[0], prior.shape[2] // 4, a["num_classes"]
    loc = loc.reshape(num, num_priors, 1 if a["share_location"] else classes, 4)
    conf = conf.reshape(num, num_priors, classes)
    boxes_p, var_p = prior[0, 0].reshape(num_priors, 4), prior[0, 1].reshape(num_priors, 4)
    out = np.full(node.outputs[0].type.shape, -1.0, np.float32)
    rows = out.reshape(-1, 7)
    count = 0
    for i in range(num):
        for c, kept, boxes in _detect_image(a, loc[i], conf[i], boxes_p, var_p):
            n = len(kept)
            rows[count:count + n, 0] = i
            rows[count:count + n, 1] = c
            rows[count:count + n, 2] = conf[i, kept, c]
            rows[count:count + n, 3:] = boxes[kept]
            count += n
    if count == 0:
        rows[:num, 0] = np.arange(num)
    return [out]
