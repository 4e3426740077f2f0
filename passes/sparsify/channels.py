"""Structured channel (filter) pruning with real shape surgery.

Before:  %c1 = conv(%x, %w1 : f32[64,64,3,3]) ; %b = batch_norm(%c1, ...64) ; %r = relu(%b)
         %c2 = conv(%r, %w2 : f32[64,64,3,3])
After (half the channels of c1 pruned):
         %c1 = conv(%x, %w1' : f32[32,64,3,3]) ; %b = batch_norm(%c1, ...32) ; %r = relu(%b)
         %c2 = conv(%r, %w2' : f32[64,32,3,3])
Preconditions: float constant weights. Which convs can be pruned and what each edit touches is
decided by channel_plan.py (residual adds are never pruned across).
Formula: each prunable conv loses round(ratio * O) output channels (at least one kept), those with
the smallest importance |w_o|_1 * |gamma_o| / sqrt(var_o + eps) (gamma, var: the batch_norm that
directly follows, if any), following the L1-norm filter pruning of Li et al. 2017.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import numpy as np

from ...errors import LpdcError
from ...ir import Graph, Node
from .channel_plan import ChannelPlan, NotPrunable, plan_channels
from .magnitude import check_sparsity

log = logging.getLogger(__name__)


def importance(graph: Graph, conv: Node) -> np.ndarray:
    """Per output channel: the filter's L1 norm, scaled by a following batch_norm's |gamma| / sigma."""
    w = np.asarray(graph.const_data(conv.inputs[1]), dtype=np.float64)
    score = np.abs(w.reshape(w.shape[0], -1)).sum(axis=1)
    users = conv.outputs[0].users
    if len(users) == 1 and users[0].op == "batch_norm":
        bn = users[0]
        gamma, var = graph.const_data(bn.inputs[1]), graph.const_data(bn.inputs[4])
        if gamma is not None and var is not None and gamma.size == score.size:
            score = score * np.abs(gamma.reshape(-1)) / np.sqrt(var.reshape(-1) + bn.attrs.get("eps", 1e-5))
    return score


def apply_channel_plan(graph: Graph, plan: ChannelPlan) -> None:
    """Perform the plan's edits in place (new constants; old ones erased when unused), retype."""
    for s in plan.slices:
        old = s.node.inputs[s.index]
        data = np.take(graph.const_data(old), s.keep, axis=s.axis)
        new = graph.add_const(data, old.name, dtype=old.type.dtype, quant=old.type.quant)
        s.node.set_input(s.index, new)
        if not old.users and old not in graph.outputs:
            graph.erase(old.producer)
    for node in plan.depthwise:
        node.attrs = {**node.attrs, "group": plan.groups[id(node)]}
    graph.toposort()
    for node in graph.nodes:
        if node.op != "const":
            graph.reinfer(node)


def prunable_convs(graph: Graph, layers: Collection[str] | None = None) -> list[Node]:
    """The convs whose output channels can be pruned (named in `layers`, when given)."""
    out = []
    for node in graph.nodes:
        if node.op != "conv" or (layers is not None and node.name not in layers):
            continue
        try:
            plan_channels(graph, node, np.array([0]))
        except NotPrunable as e:
            log.debug("channel pruning skips %s: %s", node.name, e)
            continue
        out.append(node)
    return out


def channel_prune(graph: Graph, ratio: float, layers: Collection[str] | None = None) -> Graph:
    """A copy of `graph` with `ratio` of the output channels of every prunable conv removed."""
    r = check_sparsity(ratio)
    g = graph.copy()
    known = {n.name for n in g.nodes if n.op == "conv"}
    if layers is not None and set(layers) - known:
        raise LpdcError(f"no conv named {sorted(set(layers) - known)[0]!r}", where=f"graph @{g.name}")
    names = [n.name for n in prunable_convs(g, layers)]
    if layers is not None and len(names) < len(set(layers)):
        skipped = sorted(set(layers) - set(names))
        log.warning("channel pruning cannot prune %s (its channels reach a residual add, an output or "
                    "an unsupported op)", ", ".join(skipped))
    for name in names:
        conv = next(n for n in g.nodes if n.name == name and n.op == "conv")
        score = importance(g, conv)
        count = min(int(round(r * score.size)), score.size - 1)
        if count <= 0:
            continue
        removed = np.sort(np.argsort(score, kind="stable")[:count])
        try:
            apply_channel_plan(g, plan_channels(g, conv, removed))
        except NotPrunable as e:  # an earlier edit changed what this conv feeds
            log.warning("channel pruning skips %s: %s", name, e)
    g.verify()
    return g
