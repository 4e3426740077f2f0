"""The pruning report: per layer its sparsity, weight bytes dense vs in the smallest sparse format,
and the primitive primitive selection chose for it.

    report = sparsity_report(pruned, choices=plan.choices)   # choices: layer name -> "prim@layout"
    text = format_report(report)                              # a table for the terminal
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ...ir import Graph
from .formats import smallest_format, sparsity_of
from .magnitude import weight_layers


@dataclass(frozen=True)
class LayerReport:
    """One conv / fully_connected layer of a pruned graph."""

    name: str
    op: str
    shape: tuple[int, ...]
    sparsity: float
    dense_bytes: int
    sparse_format: str
    sparse_bytes: int
    primitive: str


def sparsity_report(graph: Graph, choices: Mapping[str, str] | None = None) -> list[LayerReport]:
    """A LayerReport per weight layer; `primitive` from `choices` (or the node's attribute, or "-")."""
    out = []
    for node in weight_layers(graph):
        w = np.asarray(graph.const_data(node.inputs[1]))
        fmt, nbytes = smallest_format(w, 8.0 * w.dtype.itemsize)
        prim = (choices or {}).get(node.name) or node.attrs.get("primitive") or "-"
        out.append(LayerReport(node.name, node.op, tuple(w.shape), sparsity_of(w), int(w.nbytes), fmt,
                               min(nbytes, int(w.nbytes)), prim))
    return out


def format_report(rows: list[LayerReport]) -> str:
    """A text table with a total line."""
    lines = [f"{'layer':<24} {'op':<16} {'weights':<18} {'sparsity':>8} {'dense KiB':>10} "
             f"{'sparse KiB':>10} {'format':<6} primitive"]
    for r in rows:
        lines.append(f"{r.name:<24} {r.op:<16} {'x'.join(map(str, r.shape)):<18} {r.sparsity:>8.1%} "
                     f"{r.dense_bytes / 1024:>10.1f} {r.sparse_bytes / 1024:>10.1f} {r.sparse_format:<6} {r.primitive}")
    dense = sum(r.dense_bytes for r in rows)
    sparse = sum(r.sparse_bytes for r in rows)
    zeros = sum(r.sparsity * np.prod(r.shape) for r in rows) / max(sum(np.prod(r.shape) for r in rows), 1)
    lines.append(f"{'total':<24} {'':<16} {'':<18} {zeros:>8.1%} {dense / 1024:>10.1f} {sparse / 1024:>10.1f}")
    return "\n".join(lines)
