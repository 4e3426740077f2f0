"""Converters of the SSD fork's layers: Permute, PriorBox and DetectionOutput (Normalize is in
layers_nn). Attribute defaults follow the fork's C++ code where the schema has none."""

from __future__ import annotations

from typing import Any

from ...errors import LpdcTypeError
from ...ir import Value
from .context import Ctx, converter
from .schema import enum_name

# DetectionOutput without confidence_threshold keeps every score (Caffe uses -FLT_MAX).
NO_THRESHOLD = -3.4028234663852886e38


@converter("Permute")
def _permute(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    """Axes in `order` first, then the axes it leaves out, in their order (PermuteLayer)."""
    x = bottoms[0]
    rank = x.type.rank
    order = list(layer.permute_param.order)
    if len(set(order)) != len(order) or any(o >= rank for o in order):
        raise ctx.error(LpdcTypeError, f"Permute `order` {order} must name distinct axes of a rank-{rank} input")
    perm = order + [a for a in range(rank) if a not in order]
    if perm == list(range(rank)):
        return [x]
    return [ctx.emit("transpose", [x], perm=perm)]


@converter("PriorBox")
def _prior_box(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.prior_box_param
    if len(bottoms) != 2:
        raise ctx.error(LpdcTypeError, "PriorBox takes two bottoms (the feature map and the image)")
    if p.HasField("img_size") and (p.HasField("img_h") or p.HasField("img_w")):
        raise ctx.error(LpdcTypeError, "give either `img_size` or `img_h`/`img_w`, not both")
    img = [p.img_size] * 2 if p.HasField("img_size") else [p.img_h, p.img_w]
    if p.HasField("step") and (p.HasField("step_h") or p.HasField("step_w")):
        raise ctx.error(LpdcTypeError, "give either `step` or `step_h`/`step_w`, not both")
    step = [p.step] * 2 if p.HasField("step") else [p.step_h, p.step_w]
    variance = list(p.variance) or [0.1]
    if len(variance) not in (1, 4):
        raise ctx.error(LpdcTypeError, f"`variance` takes 1 or 4 values, got {len(variance)}")
    return [ctx.emit("prior_box", bottoms, min_sizes=list(p.min_size), max_sizes=list(p.max_size),
                     aspect_ratios=list(p.aspect_ratio), flip=p.flip, clip=p.clip, variance=variance,
                     img_size=img, step=step, offset=p.offset)]


@converter("DetectionOutput")
def _detection_output(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    p = layer.detection_output_param
    if len(bottoms) != 3:
        raise ctx.error(LpdcTypeError, f"DetectionOutput takes 3 bottoms (loc, conf, prior), got {len(bottoms)}")
    if not p.HasField("num_classes"):
        raise ctx.error(LpdcTypeError, "DetectionOutput needs `num_classes`")
    nms = p.nms_param
    return [ctx.emit("detection_output", bottoms, num_classes=p.num_classes, share_location=p.share_location,
                     background_label_id=p.background_label_id, nms_threshold=nms.nms_threshold,
                     top_k=nms.top_k if nms.HasField("top_k") else -1, eta=nms.eta, keep_top_k=p.keep_top_k,
                     confidence_threshold=p.confidence_threshold if p.HasField("confidence_threshold")
                     else NO_THRESHOLD,
                     code_type=enum_name(p, "code_type").lower(),
                     variance_encoded_in_target=p.variance_encoded_in_target)]
