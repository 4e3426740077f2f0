"""dce: dead-code elimination.

Before: `%t = relu(%x)` whose result nobody reads (and is not returned); unused constants.
After:  those nodes are gone, and so is whatever fed only them.
Preconditions: none. A pure op (trait PURE: every op in the IR today) has no side effects, so a
node none of whose outputs is read or returned cannot change the graph's outputs: removing it is
always safe. A node of an op without the trait is kept.
Formula: keep(n) = any output of n is a graph output or read by a kept node.
"""

from __future__ import annotations

import logging

from ..ir import Graph
from .manager import register_pass
from .rewrite import remove_dead

log = logging.getLogger(__name__)


@register_pass("dce")
def dce(graph: Graph) -> Graph:
    """Remove unused nodes (one reverse sweep reaches a fixed point: readers follow producers)."""
    n = remove_dead(graph)
    log.debug("dce: removed %d nodes", n)
    return graph
