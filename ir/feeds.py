"""Seeded inputs for a graph: what tests, the CLI, benchmarks and measurements feed when the user gives none."""

from __future__ import annotations

import numpy as np

from . import dtypes
from .graph import Graph


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """One array per graph input, from one seeded generator in input order: standard normal floats,
    integers in [0, 10), random bools. The same seed gives the same feeds everywhere."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for v in graph.inputs:
        dt = dtypes.to_numpy(v.type.dtype)
        shape = v.type.shape
        if dt.kind == "f":
            out[v.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            out[v.name] = rng.random(shape) < 0.5
        else:
            out[v.name] = rng.integers(0, 10, size=shape).astype(dt)
    return out
