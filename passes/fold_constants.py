"""fold-constants: evaluate nodes whose inputs are all constants.

Before:     %a = const dense<[1.0, 2.0]> : f32[2]
            %b = mul(%a, %a) : f32[2]
After:      %b = const dense<[1.0, 4.0]> : f32[2]
Preconditions: every op is pure, so a node whose inputs are all constants has one possible
result. It is computed with the node's NumPy reference kernel (the definition of the op), so
the folded constant is exactly what the reference interpreter would produce at run time.
Nodes without a kernel, nodes whose evaluation fails, and folds that would grow the model (an
output of more bytes than its inputs, as a broadcast or a dequantize of int8 weights makes) are
left alone.
Formula: const(op(c1, ..., cn)) := kernel_op(c1, ..., cn); the constant keeps the value's name.
"""

from __future__ import annotations

import logging

from ..ir import Graph, Node
from .manager import register_pass
from .pattern import all_const
from .rewrite import const_before, evaluate, name_const, remove_dead

log = logging.getLogger(__name__)
# Outputs up to this many bytes may be larger than their inputs. Larger growth is refused: a
# broadcast would bloat the model, and dequantize(int8 weights) would undo weight compression.
GROWTH_FLOOR = 16384


def fold_node(graph: Graph, node: Node, only_ints: bool = False, allow_growth: bool = False) -> bool:
    """Replace `node` by constants if all its inputs are constants; True when it did.

    `only_ints` restricts folding to nodes with integer outputs (shape arithmetic). `allow_growth`
    lifts the size limit (a backend materialising dequantized weights for its kernels).
    """
    if node.op == "const" or not node.inputs or not all_const(graph, node):
        return False
    if only_ints and any(v.type.dtype.startswith("f") for v in node.outputs):
        return False
    in_bytes = sum(v.type.nbytes for v in node.inputs if v is not None)
    if not allow_growth and sum(v.type.nbytes for v in node.outputs) > max(in_bytes, GROWTH_FLOOR):
        return False
    results = evaluate(graph, node)
    if results is None:
        return False
    consts = [const_before(graph, r, node, v.name, v.type.dtype) for v, r in zip(node.outputs, results, strict=True)]
    names = [v.name for v in node.outputs]
    for v, c in zip(node.outputs, consts, strict=True):
        c.type = v.type  # keeps layout and quantization parameters
        graph.replace_all_uses(v, c)
    graph.erase(node)
    for c, name in zip(consts, names, strict=True):
        name_const(graph, c, name)
    return True


@register_pass("fold-constants")
def fold_constants(graph: Graph) -> Graph:
    """Fold every all-constant node, in order, so chains of them fold in one sweep."""
    folded = sum(fold_node(graph, node) for node in list(graph.nodes) if node.op != "const")
    remove_dead(graph)
    log.debug("fold-constants: folded %d nodes", folded)
    return graph
