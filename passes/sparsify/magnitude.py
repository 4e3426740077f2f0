"""Magnitude pruning: zero the smallest weights of conv / fully_connected layers.

Before:  %fc = fully_connected(%x, %w)          @w dense
After:   %fc = fully_connected(%x, %w')         @w' = w with the smallest |w| set to 0
Preconditions: float weights held in constants.
Formula: per layer, w'[i] = w[i] * (|w[i]| > t) with t the `sparsity` quantile of |w| (ties broken
         by position, so exactly round(sparsity * size) weights are zero); "global" scope uses one t
         over the weights of all selected layers (layers with small weights lose more).

The graph keeps dense arrays: the zeroed array is the source of truth, and the sparse primitives
derive their formats (CSR, CSC, COO, BSR) from it (backends/numpy/primitives/sparse_ext.py).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from ...errors import LpdcError
from ...ir import Graph, Node

PRUNABLE_OPS = ("conv", "fully_connected")


def weight_layers(graph: Graph, layers: Collection[str] | None = None) -> list[Node]:
    """The conv / fully_connected nodes with float constant weights (those named in `layers`)."""
    found = [n for n in graph.nodes if n.op in PRUNABLE_OPS and graph.const_data(n.inputs[1]) is not None
             and np.asarray(graph.const_data(n.inputs[1])).dtype.kind == "f"]
    if layers is None:
        return found
    names = {n.name for n in found}
    missing = sorted(set(layers) - names)
    if missing:
        raise LpdcError(f"no prunable layer named {missing[0]!r} (prunable: {', '.join(sorted(names)) or 'none'})",
                        where=f"graph @{graph.name}")
    return [n for n in found if n.name in set(layers)]


def check_sparsity(sparsity: float) -> float:
    """`sparsity` as a float in [0, 1); anything else is an LpdcError."""
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise LpdcError(f"sparsity must be a number in [0, 1), got {sparsity!r}", where="prune") from None
    if not 0.0 <= s < 1.0:
        raise LpdcError(f"sparsity must be in [0, 1), got {s}", where="prune")
    return s


def zero_smallest(w: np.ndarray, count: int) -> np.ndarray:
    """A copy of `w` with its `count` smallest-magnitude entries set to zero."""
    out = np.array(w, copy=True)
    if count <= 0:
        return out
    flat = out.reshape(-1)
    idx = np.argpartition(np.abs(flat), min(count, flat.size) - 1)[:count]
    flat[idx] = 0
    return out


def _set_weights(graph: Graph, node: Node, w: np.ndarray) -> None:
    """Store new weights for `node` under a fresh parameter (other users keep the old array)."""
    old = node.inputs[1]
    new = graph.add_const(w, f"{old.name}", dtype=old.type.dtype, quant=old.type.quant)
    node.set_input(1, new)
    if not old.users and old not in graph.outputs:
        graph.erase(old.producer)


def magnitude_prune(graph: Graph, sparsity: float, layers: Collection[str] | None = None,
                    scope: str = "layer") -> Graph:
    """A copy of `graph` whose selected layers have `sparsity` of their weights zeroed ("layer":
    each layer to that sparsity; "global": one magnitude threshold across the selected layers)."""
    s = check_sparsity(sparsity)
    if scope not in ("layer", "global"):
        raise LpdcError(f"unknown pruning scope {scope!r} (layer or global)", where="prune")
    g = graph.copy()
    nodes = weight_layers(g, layers)
    weights = [np.asarray(g.const_data(n.inputs[1])) for n in nodes]
    if scope == "global" and nodes:
        mags = np.concatenate([np.abs(w).reshape(-1) for w in weights])
        k = int(round(s * mags.size))
        t = np.partition(mags, k - 1)[k - 1] if k > 0 else -1.0
        pruned = [np.where(np.abs(w) <= t, 0, w).astype(w.dtype) for w in weights]
    else:
        pruned = [zero_smallest(w, int(round(s * w.size))) for w in weights]
    for n, w in zip(nodes, pruned, strict=True):
        _set_weights(g, n, w)
    g.toposort()
    g.verify()
    return g
