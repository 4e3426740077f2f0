"""A depthwise conv and the 1x1 conv that reads it, as one CPU kernel (MobileNet's separable pairs).

Both layers are cheap per byte: run apart, the depthwise output (1.6-4.8 MB in MobileNet's early
layers) goes out to L3 or DRAM and comes straight back. Fused, the 1x1 conv keeps its own
rows-outermost schedule and each of its output rows first computes the one depthwise row it
needs into a row buffer (tens of KB, cache-resident), so the depthwise output never exists.
Nothing is recomputed: a 1x1 stride-1 conv's row i reads exactly depthwise row i.

The pair fuses only when the result is the same kernel work: the depthwise output feeds nothing
else and is not a graph output, the 1x1 conv is dense f32 without padding, and its register
tile (default, `knobs`, or a measured variant) is rows-outermost. compile_tvm(fuse_depthwise=)
turns it off; exe.plan's steps then show the pairs apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import LpdcUnsupportedError
from ...ir import Graph, Node
from . import compute as C
from .lower import Lowered, _epi_key, _epilogue, _f32, conv_shape


def is_depthwise(node: Node, g: Graph) -> bool:
    w = g.const_data(node.inputs[1]) if len(node.inputs) > 1 else None
    return (node.op == "conv" and w is not None and w.ndim == 4 and w.shape[1] == 1
            and node.attrs.get("group") == w.shape[0] == node.inputs[0].type.shape[1])


def _is_pointwise(node: Node, g: Graph) -> bool:
    w = g.const_data(node.inputs[1]) if len(node.inputs) > 1 else None
    a = node.attrs
    return (node.op == "conv" and w is not None and w.ndim == 4 and w.shape[2:] == (1, 1) and a.get("group") == 1
            and list(a.get("stride", [1, 1])) == [1, 1] and not any(a.get("pad", [0, 0, 0, 0])))


def pointwise_partner(node: Node, g: Graph, knobs: Any = None, override: Lowered | None = None,
                      sparse: bool | None = None, vec: int = 16, registers: int = 32) -> tuple[Node, Any] | None:
    """(the 1x1 conv to fuse into depthwise `node`, its register tile), or None when they stay apart.
    `knobs` / `override` / `sparse`: what the planner would use for that 1x1 conv alone."""
    from .schedules.x86_conv import check_knobs, default_conv_knobs

    out = node.output
    if not is_depthwise(node, g) or out in g.outputs or len(out.users) != 1:
        return None
    pw = out.users[0]
    ins = list(node.inputs) + [None, None]
    if ins[3] is not None or not _is_pointwise(pw, g) or pw.inputs[0] is not out or sparse:
        return None
    try:
        _f32(node)
        _f32(pw)
    except LpdcUnsupportedError:
        return None
    s = conv_shape(pw, g.const_data(pw.inputs[1]))
    if override is not None:
        kn = override.info.get("knobs") if override.schedule == "conv" else None
    else:
        kn = check_knobs(s, knobs, where=pw.name) if knobs is not None else default_conv_knobs(s, vec, registers)
    return (pw, kn) if kn is not None and kn.rows_outer else None


def lower_depthwise_pointwise(dw: Node, pw: Node, kn: Any, g: Graph) -> Lowered:
    """The fused kernel: args x, depthwise weights [+ its bias, slope], packed 1x1 weights
    [+ bias, residual, slope]; its output is the 1x1 conv's (Lowered.absorbs = [pw])."""
    wd, wp = g.const_data(dw.inputs[1]), g.const_data(pw.inputs[1])
    sd, sp = conv_shape(dw, wd), conv_shape(pw, wp)
    epi_dw, extra_dw = _epilogue(dw, g, sd.k)
    epi_pw, extra_pw = _epilogue(pw, g, sp.k)
    tensors, _ = C.depthwise_pointwise_nhwc(sd, epi_dw, sp, kn.oc_tile, epi_pw, kn.kp, kn.owp)
    args = [dw.inputs[0], C.pack_depthwise_weight(wd), *extra_dw,
            C.pack_conv_weight(np.asarray(wp), kn.oc_tile, kn.kp), *extra_pw]
    key = ("dw_pw", sd, _epi_key(epi_dw), sp, kn, _epi_key(epi_pw))
    return Lowered(tensors, args, "dw_pw", key, {"shape": sp, "knobs": kn, "dw_shape": sd}, absorbs=[pw])


def fusable_pointwise(g: Graph, vec: int = 16, registers: int = 32) -> set[str]:
    """Names of the 1x1 convs that fuse with their depthwise producer under default knobs: the
    variant search keeps them on rows-outer tiles (variants.py), so tuning does not undo fusion."""
    found = (pointwise_partner(n, g, vec=vec, registers=registers) for n in g.nodes)
    return {pair[0].name for pair in found if pair is not None}
