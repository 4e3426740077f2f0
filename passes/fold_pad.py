"""fold-pad: fold an explicit constant pad into the padding of the conv or pool reading it.

Before:  %p = pad(%x) {pads=[0,0,1,1,0,0,1,1]} : f32[1,8,10,10]
         %y = conv(%p, %w) : f32[1,8,8,8]
After:   %y = conv(%x, %w) {pad=[1,1,1,1]} : f32[1,8,8,8]

Formula: pad'[top, left, bottom, right] = pad + (pads of the H and W axes).
Why it is safe, per reader:
    conv      pads with zeros, so only a zero pad value folds.
    max_pool  pads with -inf ("padding never wins"). A pad value of -inf folds. A finite value v
              folds only when it can never win either: the input is known >= 0 (it comes out of
              a ReLU-like op) with v <= 0, the dilation is 1 and every window keeps at least one
              real element (the pool's own checks, pad < kernel, guarantee that at dilation 1).
    avg_pool  pads with zeros; its divisor must count the folded pad like real elements. With
              count_include_pad the divisor is the window clipped to the padded input, which the
              fold leaves unchanged. Without it the divisor counts only real input elements, which
              matches only when the pool had no padding of its own; the folded pool then sets
              count_include_pad so the folded zeros are counted as the original's input elements.
Preconditions: constant mode, pads >= 0 and only on the two spatial axes, 4-D float unquantized
input, the pad read only by that conv/pool (as its data input); the folded node must have the same
output type as before (ceil-mode pools can differ, and are then left alone).
"""

from __future__ import annotations

import logging
import math

from ..errors import LpdcError
from ..ir import Graph, Node
from ..ir.ops._shape import nchw_axes
from .manager import register_pass
from .pattern import is_float, nonnegative, single_user
from .rewrite import remove_dead, run_rules, try_rebuild

log = logging.getLogger(__name__)


def _spatial_pads(pad: Node) -> list[int] | None:
    """[top, left, bottom, right] of a pad touching only the spatial axes, else None."""
    t = pad.inputs[0].type
    if t.rank != 4 or not is_float(t):
        return None
    try:
        c_ax, h_ax, w_ax = nchw_axes(t)
    except LpdcError:
        return None
    pads = pad.attrs["pads"]
    begin, end = pads[:4], pads[4:]
    if any(p < 0 for p in pads) or begin[0] or end[0] or begin[c_ax] or end[c_ax]:
        return None
    return [begin[h_ax], begin[w_ax], end[h_ax], end[w_ax]]


def _valid(g: Graph, pad: Node, user: Node) -> bool:
    value = pad.attrs["value"]
    if user.op == "conv":
        return value == 0
    if user.op == "avg_pool":
        return value == 0 and (user.attrs["count_include_pad"] or not any(user.attrs["pad"]))
    if math.isinf(value) and value < 0:
        return True
    return value <= 0 and nonnegative(g, pad.inputs[0]) and user.attrs["dilation"] == [1, 1]


def fold_pad_into_reader(g: Graph, pad: Node) -> bool:
    """The rule: pad -> conv/max_pool/avg_pool becomes the conv/pool with more padding."""
    if pad.op != "pad" or pad.attrs["mode"] != "constant":
        return False
    extra = _spatial_pads(pad)
    user = single_user(g, pad.output)
    if extra is None or user is None or user.op not in ("conv", "max_pool", "avg_pool"):
        return False
    if user.inputs[0] is not pad.output or not _valid(g, pad, user):
        return False
    attrs = dict(user.attrs)
    attrs["pad"] = [a + b for a, b in zip(user.attrs["pad"], extra, strict=True)]
    if user.op == "avg_pool":
        attrs["count_include_pad"] = True
    return try_rebuild(g, user, [pad.inputs[0], *user.inputs[1:]], attrs) is not None


@register_pass("fold-pad")
def fold_pad(graph: Graph) -> Graph:
    """Fold constant pads into the convs and pools that read them."""
    n = run_rules(graph, [fold_pad_into_reader])
    remove_dead(graph)
    log.debug("fold-pad: %d folds", n)
    return graph
