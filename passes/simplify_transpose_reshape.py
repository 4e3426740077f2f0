"""simplify-transpose-reshape: compose and remove data-movement ops that cancel out.

Rules:
    transpose(transpose(x, p1), p2)  -> transpose(x, q),  q[i] = p1[p2[i]]
    transpose(x, identity perm)      -> x
    view(view(x))                    -> reshape(x, shape=final shape)   view: reshape, flatten,
                                                                         squeeze, unsqueeze
    view(x) with the type of x       -> x

Before:  %t1 = transpose(%x) {perm=[0,2,3,1]} : f32[1,4,4,3]
         %t2 = transpose(%t1) {perm=[0,3,1,2]} : f32[1,3,4,4]
After:   %t2 = x   (q = [0,1,2,3], the identity: readers of %t2 read %x)

Formula: transpose(x, p)[..] has axis i = x's axis p[i]; applying p2 to that gives axis
p1[p2[i]] of x. All view ops reinterpret the same row-major data, so a chain of them equals one
reshape to the chain's final (static) shape.
Preconditions: every rewrite keeps the node's output type (shape, dtype, layout); a forward to
`x` needs `x`'s type to be the output's type. An inner op read by others stays for them.
"""

from __future__ import annotations

import logging

from ..ir import Graph, Node
from .manager import register_pass
from .rewrite import forward, remove_dead, run_rules, try_rebuild

log = logging.getLogger(__name__)
VIEWS = ("reshape", "flatten", "squeeze", "unsqueeze")


def _perm(node: Node) -> list[int]:
    return node.attrs["perm"] or list(range(node.inputs[0].type.rank))[::-1]


def compose_transposes(g: Graph, node: Node) -> bool:
    """transpose(transpose(x, p1), p2) -> transpose(x, p1 o p2)."""
    inner = node.inputs[0].producer if node.op == "transpose" else None
    if inner is None or inner.op != "transpose":
        return False
    p1, p2 = _perm(inner), _perm(node)
    return try_rebuild(g, node, [inner.inputs[0]], {**node.attrs, "perm": [p1[i] for i in p2]}) is not None


def drop_noop(g: Graph, node: Node) -> bool:
    """An identity transpose, or a view op that does not change the type, is its input."""
    if node.op == "transpose" and _perm(node) != list(range(node.output.type.rank)):
        return False
    if node.op not in VIEWS + ("transpose",) or node.output.type != node.inputs[0].type:
        return False
    return forward(g, node, node.inputs[0])


def merge_views(g: Graph, node: Node) -> bool:
    """view(view(x)) -> reshape(x) to the final shape."""
    inner = node.inputs[0].producer if node.op in VIEWS else None
    if inner is None or inner.op not in VIEWS:
        return False
    shape = list(node.output.type.shape)
    return try_rebuild(g, node, [inner.inputs[0]], {"shape": shape}, op="reshape") is not None


@register_pass("simplify-transpose-reshape")
def simplify_transpose_reshape(graph: Graph) -> Graph:
    """Compose transposes and views, drop the ones that do nothing."""
    n = run_rules(graph, [drop_noop, compose_transposes, merge_views])
    remove_dead(graph)
    log.debug("simplify-transpose-reshape: %d rewrites", n)
    return graph
