"""fuse-residual: fold a residual add into the epilogue of the conv (or fully_connected) feeding it.

Before:  %c = conv(%x, %w, %b) {group=16} : f32[1,16,8,8]
         %s = add(%c, %skip) : f32[1,16,8,8]
         %y = relu(%s) : f32[1,16,8,8]
After:   %s = conv(%x, %w, %b, %skip) {group=16} : f32[1,16,8,8]        (loc("c"))
         %y = relu(%s)       (fuse-activation then moves this ReLU into the conv as well)

Formula: add(conv(x) + b, r) = conv(x) + b + r, which is the epilogue y = act(conv(x) + b + r)
with act = none; an activation already on the add moves with it (act(a + r) is the epilogue's
order of operations). The residual is added element by element after the convolution, so groups,
depthwise convs, strides and dilations do not matter.
Preconditions: the conv's output is read only by the add and is not a graph output; the conv has
no activation (act(conv) + r is not expressible) and no residual yet; the add does not broadcast
(both operands have the add's type); float unquantized types. When both operands are convs the
one later in execution order takes the other as residual (its input is then already computed).
The pass restores a topological order afterwards, since the residual may be computed after the
conv's old position.
"""

from __future__ import annotations

import logging

from ..ir import Graph, Node, Value
from .fuse_activation import slope_slot
from .manager import register_pass
from .pattern import input_at, is_float, single_user
from .rewrite import forward, remove_dead, run_rules, set_inputs

log = logging.getLogger(__name__)


def _candidates(g: Graph, add: Node) -> list[tuple[Node, Value]]:
    """(host, residual) pairs, the host later in node order first."""
    pairs = []
    for i in (0, 1):
        host = add.inputs[i].producer
        if host is not None and host.op in ("conv", "fully_connected"):
            pairs.append((host, add.inputs[1 - i]))
    order = {id(n): k for k, n in enumerate(g.nodes)} if len(pairs) > 1 else {}
    return sorted(pairs, key=lambda p: -order.get(id(p[0]), 0))


def fuse_residual_add(g: Graph, add: Node) -> bool:
    """The rule: add(conv(x), r) -> conv(x, residual=r), keeping the add's activation."""
    if add.op != "add" or not is_float(add.output.type):
        return False
    out_t = add.output.type
    for host, residual in _candidates(g, add):
        if single_user(g, host.output) is not add or host.attrs["activation"] != "none":
            continue
        if input_at(host, 3) is not None or host.output.type != out_t or residual.type != out_t:
            continue
        updates: dict[int, Value | None] = {3: residual}
        slope = input_at(add, 2)
        if slope is not None:
            slot = slope_slot(host)
            if slot != 4:
                continue
            updates[4] = slope
        a = add.attrs
        host = set_inputs(g, host, updates, activation=a["activation"], act_alpha=a["act_alpha"],
                          act_beta=a["act_beta"])
        return forward(g, add, host.output)
    return False


@register_pass("fuse-residual")
def fuse_residual(graph: Graph) -> Graph:
    """Fuse residual adds into convs, then restore a topological order."""
    n = run_rules(graph, [fuse_residual_add])
    if n:
        graph.toposort()
    remove_dead(graph)
    log.debug("fuse-residual: %d fusions", n)
    return graph
