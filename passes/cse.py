"""cse: common-subexpression elimination.

Before: `%a = relu(%x)` and `%b = relu(%x)`; two constants holding the same small array.
After:  one `%a = relu(%x)` read by the users of both; one constant.
Preconditions: none. Ops are pure and deterministic, so two nodes with the same op, the same
attributes and the same input values compute the same outputs. Constants are merged when
their type (dtype, shape, quantization) and bytes are equal; only small ones are hashed, since
large identical weight tensors are rare and hashing them costs time.
Formula: key(n) = (op, attrs, input values) or, for constants, (type, bytes).
A duplicate whose output is a graph output is kept when merging would lose the output's name.
"""

from __future__ import annotations

import logging
from typing import Any

from ..ir import Graph, Node
from .manager import register_pass
from .rewrite import can_forward

log = logging.getLogger(__name__)
CONST_HASH_LIMIT = 4096  # elements; larger constants are never compared


def _freeze(a: Any) -> Any:
    return tuple(_freeze(x) for x in a) if isinstance(a, list) else a


def _key(graph: Graph, node: Node) -> tuple | None:
    if node.op == "const":
        data = graph.const_data(node.output)
        if data is None or data.size > CONST_HASH_LIMIT:
            return None
        return ("const", node.output.type, data.tobytes())
    attrs = tuple(sorted((k, _freeze(v)) for k, v in node.attrs.items()))
    return (node.op, attrs, tuple(id(v) if v is not None else None for v in node.inputs))


def _merge(graph: Graph, dup: Node, keep: Node) -> bool:
    if not all(can_forward(graph, a, b) for a, b in zip(dup.outputs, keep.outputs, strict=True)):
        return False
    renames = [(b, a.name) for a, b in zip(dup.outputs, keep.outputs, strict=True) if a in graph.outputs]
    for a, b in zip(dup.outputs, keep.outputs, strict=True):
        graph.replace_all_uses(a, b)
    graph.erase(dup)
    for v, name in renames:
        graph.rename_value(v, name)
    return True


@register_pass("cse")
def cse(graph: Graph) -> Graph:
    """Merge nodes that compute the same thing; inputs are merged first (node order is topological)."""
    seen: dict[tuple, Node] = {}
    merged = 0
    for node in list(graph.nodes):
        key = _key(graph, node)
        if key is None:
            continue
        first = seen.get(key)
        if first is None:
            seen[key] = node
        elif _merge(graph, node, first):
            merged += 1
    log.debug("cse: merged %d nodes", merged)
    return graph
