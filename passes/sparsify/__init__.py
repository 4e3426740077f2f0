"""Sparsification: magnitude (unstructured) and channel (structured) pruning, sparse weight sizes,
the pruning report, and the layer-aware (prune ratio, bits) compression search.

`prune(graph, sparsity, method, layers)` is the entry point (exported as `lpdc.prune`). Pruned
weights stay dense arrays with zeros in graph.params; the sparse primitives
(backends/numpy/primitives/sparse.py, sparse_ext.py) derive CSR / CSC / COO / BSR from them and
enter primitive selection (passes/select) as ordinary choices with measured costs.
"""

from .channels import channel_prune, prunable_convs
from .magnitude import magnitude_prune
from .prune import METHODS, prune
from .report import LayerReport, format_report, sparsity_report

__all__ = ["METHODS", "LayerReport", "channel_prune", "format_report", "magnitude_prune", "prunable_convs",
           "prune", "sparsity_report"]
