"""SSD-style detection on MobileNet v1 (the MobileNet-SSD layout: 300x300 input, 21 classes,
heads on conv11, conv13 and four extra stride-2 layers, 1917 boxes).

The ONNX-exportable form ends at the heads: per feature map a loc conv (4 numbers per prior) and
a conf conv (one score per class per prior), each permuted to NHWC, flattened and concatenated;
confidences are reshaped to (boxes, classes) and softmaxed. Prior boxes and decoding
(PriorBox / DetectionOutput) are left to the application.
"""

from __future__ import annotations

from ..ir import Graph, Value
from .builder import NetBuilder
from .zoo import model
from .zoo_models import _crb, mobilenet_v1_body

CLASSES = 21


def _head(b: NetBuilder, x: Value, priors: int, per_prior: int, name: str) -> Value:
    y = b.conv(x, priors * per_prior, 1, name=name)
    y = b.g.op("transpose", y, name=f"{name}_perm", perm=[0, 2, 3, 1])
    return b.g.op("flatten", y, name=f"{name}_flat", axis=1)


@model("ssd_mobilenet")
def ssd_mobilenet(seed: int = 0, batch: int = 1) -> Graph:
    """MobileNet-SSD heads: outputs mbox_loc (N, boxes, 4) and mbox_conf_softmax (N, boxes, 21)."""
    b = NetBuilder("ssd_mobilenet", (batch, 3, 300, 300), seed)
    conv11, x = mobilenet_v1_body(b, b.x)
    maps = [(conv11, 3, "conv11"), (x, 6, "conv13")]
    for i, (mid, out) in enumerate(((256, 512), (128, 256), (128, 256), (64, 128)), start=14):
        x = _crb(b, x, mid, 1, name=f"conv{i}_1")
        x = _crb(b, x, out, 3, 2, name=f"conv{i}_2")
        maps.append((x, 6, f"conv{i}_2"))
    locs = [_head(b, f, p, 4, f"{n}_mbox_loc") for f, p, n in maps]
    confs = [_head(b, f, p, CLASSES, f"{n}_mbox_conf") for f, p, n in maps]
    loc = b.g.op("concat", *locs, name="mbox_loc_concat", axis=1)
    loc = b.g.op("reshape", loc, name="mbox_loc", shape=[0, -1, 4])
    conf = b.g.op("concat", *confs, name="mbox_conf", axis=1)
    conf = b.g.op("reshape", conf, name="mbox_conf_reshape", shape=[0, -1, CLASSES])
    return b.finish(loc, b.g.op("softmax", conf, name="mbox_conf_softmax", axis=2))
