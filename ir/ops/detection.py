"""SSD detection ops (Caffe SSD fork): prior_box, detection_output; and resize (Upsample)."""

from __future__ import annotations

import math
from typing import Any

from ..registry import PURE, Attr, FlopCount, register_op
from ..types import TensorType
from . import _shape as S


def prior_count(attrs: dict[str, Any]) -> int:
    """Priors per feature-map cell: each min size, a max size each, and the extra aspect ratios."""
    ratios = expanded_ratios(attrs["aspect_ratios"], attrs["flip"])
    return len(attrs["min_sizes"]) * len(ratios) + len(attrs["max_sizes"])


def expanded_ratios(ratios: list[float], flip: bool) -> list[float]:
    """1 first, then each distinct ratio (and its reciprocal when flipping), as Caffe SSD orders them."""
    out = [1.0]
    for r in ratios:
        for v in [r, 1.0 / r] if flip else [r]:
            if all(abs(v - o) > 1e-6 for o in out):
                out.append(v)
    return out


@register_op(
    "prior_box",
    family="detection",
    inputs=("feature", "image"),
    attrs={
        "min_sizes": Attr([], "floats"),
        "max_sizes": Attr([], "floats"),
        "aspect_ratios": Attr([], "floats"),
        "flip": Attr(True, "bool"),
        "clip": Attr(False, "bool"),
        "variance": Attr([0.1], "floats"),
        "img_size": Attr([0, 0], "ints"),
        "step": Attr([0.0, 0.0], "floats"),
        "offset": Attr(0.5, "float"),
    },
    traits=(PURE,),
)
def _infer_prior_box(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Default boxes for one feature map: [1, 2, H*W*priors*4] (boxes, then their variances)."""
    f, img = S.present(ins[0], "feature"), S.present(ins[1], "image")
    _, fh, fw = S.nchw_axes(f)
    S.nchw_axes(img)
    S.require(
        len(attrs["min_sizes"]) >= 1 and all(m > 0 for m in attrs["min_sizes"]), "prior_box needs positive min_sizes"
    )
    S.require(
        not attrs["max_sizes"] or len(attrs["max_sizes"]) == len(attrs["min_sizes"]),
        "prior_box max_sizes must pair with min_sizes",
    )
    S.require(
        all(mx > mn for mn, mx in zip(attrs["min_sizes"], attrs["max_sizes"], strict=False)),
        "prior_box max_size must exceed min_size",
    )
    S.require(len(attrs["variance"]) in (1, 4), "prior_box variance takes 1 or 4 values")
    n = f.shape[fh] * f.shape[fw] * prior_count(attrs) * 4
    return [TensorType((1, 2, n), "f32")]


def max_detections(attrs: dict[str, Any], num_priors: int) -> int:
    """Most boxes per image that per-class NMS can keep (the row count when keep_top_k is -1)."""
    per_class = min(attrs["top_k"], num_priors) if attrs["top_k"] >= 0 else num_priors
    classes = attrs["num_classes"] - (0 <= attrs["background_label_id"] < attrs["num_classes"])
    return max(1, per_class * classes)


@register_op(
    "detection_output",
    family="detection",
    inputs=("loc", "conf", "prior"),
    attrs={
        "num_classes": Attr(21, "int"),
        "share_location": Attr(True, "bool"),
        "background_label_id": Attr(0, "int"),
        "nms_threshold": Attr(0.45, "float"),
        "top_k": Attr(-1, "int"),
        "keep_top_k": Attr(-1, "int"),
        "eta": Attr(1.0, "float"),
        "confidence_threshold": Attr(0.01, "float"),
        "code_type": Attr("center_size", "str", ("corner", "center_size", "corner_size")),
        "variance_encoded_in_target": Attr(False, "bool"),
    },
    traits=(PURE,),
    flops=lambda ins, outs, a: FlopCount(cmp=S.present(ins[1], "conf").size * 4),
)
def _infer_detection_output(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Decode boxes, per-class NMS, keep the best: [1, 1, rows, 7] of (image, label, score, xmin, ymin,
    xmax, ymax). The shape is static: rows = batch * keep_top_k, or when keep_top_k is -1 the most
    detections possible (per-class NMS keeps at most min(top_k, priors) boxes of each non-background
    class). Detections come first in Caffe's order; unused rows are -1. `eta` < 1 shrinks the NMS
    threshold after each kept box while it is above 0.5 (Caffe's adaptive NMS)."""
    loc, conf, prior = (S.present(t, n) for t, n in zip(ins, ("loc", "conf", "prior"), strict=True))
    S.require(
        prior.rank == 3 and prior.shape[1] == 2 and prior.shape[2] % 4 == 0, f"bad prior shape {list(prior.shape)}"
    )
    num_priors = prior.shape[2] // 4
    classes = attrs["num_classes"]
    S.require(classes >= 1, "detection_output needs num_classes >= 1")
    loc_classes = 1 if attrs["share_location"] else classes
    S.require(
        loc.size == loc.shape[0] * num_priors * loc_classes * 4,
        f"loc has {loc.size} values, expected {num_priors * loc_classes * 4} per image",
    )
    S.require(
        conf.size == conf.shape[0] * num_priors * classes,
        f"conf has {conf.size} values, expected {num_priors * classes} per image",
    )
    S.require(loc.shape[0] == conf.shape[0], "loc and conf batch sizes differ")
    S.require(0 < attrs["eta"] <= 1, f"detection_output eta {attrs['eta']} must be in (0, 1]")
    rows = attrs["keep_top_k"] if attrs["keep_top_k"] > 0 else max_detections(attrs, num_priors)
    return [TensorType((1, 1, loc.shape[0] * rows, 7), "f32")]


@register_op(
    "resize",
    family="detection",
    inputs=("x",),
    attrs={
        "scales": Attr([], "floats"),
        "sizes": Attr([], "ints"),
        "mode": Attr("nearest", "str", ("nearest", "linear", "cubic")),
        "coordinate_transformation_mode": Attr(
            "asymmetric",
            "str",
            (
                "asymmetric",
                "half_pixel",
                "align_corners",
                "pytorch_half_pixel",
                "tf_half_pixel_for_nn",
                "half_pixel_symmetric",
                "tf_crop_and_resize",
            ),
        ),
        "nearest_mode": Attr("floor", "str", ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")),
        # ONNX Resize details: cubic kernel parameter, renormalising without outside taps,
        # the fill for tf_crop_and_resize samples outside the input, its region of interest
        # [starts..., ends...] (normalised), and antialiasing when downsampling.
        "cubic_coeff_a": Attr(-0.75, "float"),
        "exclude_outside": Attr(False, "bool"),
        "extrapolation_value": Attr(0.0, "float"),
        "roi": Attr([], "floats"),
        "antialias": Attr(False, "bool"),
    },
    traits=(PURE,),
    flops=lambda ins, outs, a: FlopCount(mul=outs[0].size * (4 if a["mode"] != "nearest" else 0)),
)
def _infer_resize(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Resize every axis by `scales` (output floor(d*scale)) or to `sizes`; nearest, (multi)linear or cubic.

    When both are given, `sizes` is the output shape and `scales` the coordinate mapping (ONNX's
    keep_aspect_ratio_policy and scales whose product is not an integer need both)."""
    x = S.present(ins[0], "x")
    scales, sizes = attrs["scales"], attrs["sizes"]
    S.require(bool(scales) or bool(sizes), "resize needs scales or sizes")
    if scales:
        S.require(
            len(scales) == x.rank and all(s > 0 for s in scales), f"resize scales {scales} must give rank {x.rank}"
        )
    if attrs["roi"]:
        S.require(len(attrs["roi"]) == 2 * x.rank, f"resize roi needs {2 * x.rank} values, got {len(attrs['roi'])}")
    if sizes:
        S.require(len(sizes) == x.rank and all(s > 0 for s in sizes), f"resize sizes {sizes} must give rank {x.rank}")
        return [x.with_shape(tuple(sizes))]
    shape = tuple(int(math.floor(d * s + 1e-9)) for d, s in zip(x.shape, scales, strict=True))
    S.require(all(d > 0 for d in shape), f"resize gives an empty shape {list(shape)}")
    return [x.with_shape(shape)]
