"""`lpdc.prune(graph, sparsity, method, layers)`: the pruning entry point.

method "magnitude": unstructured; each selected layer (every conv / fully_connected by default)
gets `sparsity` of its weights zeroed (scope "global": one threshold across layers). The graph keeps
its shapes; the zeros are what sparse primitives skip (primitive selection decides where that pays).
method "channel": structured; `sparsity` of the output channels of every prunable conv are removed,
with the shapes of every consumer updated (see channels.py): smaller dense layers, no sparse format.
"""

from __future__ import annotations

from collections.abc import Collection

from ...errors import LpdcError
from ...ir import Graph
from .channels import channel_prune
from .magnitude import magnitude_prune

METHODS = ("magnitude", "channel")


def prune(graph: Graph, sparsity: float = 0.9, method: str = "magnitude", layers: Collection[str] | None = None,
          scope: str = "layer") -> Graph:
    """A pruned copy of `graph` (the input graph is not modified)."""
    if not isinstance(graph, Graph):
        raise LpdcError(f"prune takes an lpdc Graph, got {type(graph).__name__}", where="prune")
    if isinstance(layers, str):
        layers = [s for s in layers.split(",") if s]
    if method == "magnitude":
        return magnitude_prune(graph, sparsity, layers, scope)
    if method == "channel":
        return channel_prune(graph, sparsity, layers)
    raise LpdcError(f"unknown pruning method {method!r}; known: {', '.join(METHODS)}", where="prune")
