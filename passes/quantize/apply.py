"""`quantize(graph, calibration, scheme)`: the one-call API behind `lpdc.quantize`.

    q = lpdc.quantize(graph, calibration=[{"x": batch}, ...], scheme="int8")   # or fixed8, kmeans4, a config
    lpdc.compile(q).run({"x": batch})

Steps: resolve the scheme to a QuantConfig, check it against the graph, calibrate on the samples
(the reference interpreter's observer hook), turn specs into concrete formats (plan) and rewrite the
graph (lower). The input graph is not modified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ...errors import LpdcError
from ...ir import Graph
from .calibrate import Calibration, calibrate
from .config import QuantConfig, resolve
from .lower import lower
from .plan import build_plans, calibration_values

Samples = Sequence[Mapping[str, np.ndarray]] | Mapping[str, np.ndarray]


def quantize_with(graph: Graph, config: QuantConfig, cal: Calibration | None) -> Graph:
    """A quantized copy of `graph` under `config`, given calibration statistics (None if not needed)."""
    return lower(graph.copy(), build_plans(graph, config, cal))


def quantize(graph: Graph, calibration: Samples | None = None,
             scheme: str | dict | QuantConfig | Path = "int8", passes: Sequence[str] = ()) -> Graph:
    """Quantize `graph`: scheme "int8" (integer kernels), "fixed8" (dynamic fixed point), "kmeans4"
    (weight codebooks), another preset (intN, fixedN, kmeansN) or a configuration (QuantConfig, dict,
    or .json path, e.g. the one `lpdc quantize --report` writes).

    `passes` run first (e.g. ("fold-bn", "fuse-activation") so batch norms and activations end up
    inside the integer layers); layer names in a configuration refer to the graph after them."""
    if not isinstance(graph, Graph):
        raise LpdcError(f"quantize takes an lpdc Graph, got {type(graph).__name__}", where="quantize")
    config = resolve(scheme)
    graph.verify()
    if passes:
        from ..manager import PassManager

        graph = PassManager(list(passes)).run(graph.copy())
    config.validate(graph)
    cal = calibrate(graph, calibration, calibration_values(graph)) if calibration is not None else None
    return quantize_with(graph, config, cal)
