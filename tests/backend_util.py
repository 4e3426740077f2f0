"""Helpers for the backend tests that compare a whole model with the NumPy reference."""

from __future__ import annotations

import numpy as np
from lpdc.ir import Graph


def with_logits(g: Graph) -> Graph:
    """`g` with the input of each final softmax added as an output (random weights can saturate it)."""
    extra = [v.producer.inputs[0] for v in g.outputs if v.producer is not None and v.producer.op == "softmax"]
    g.set_outputs(list(g.outputs) + [v for v in extra if v not in g.outputs])
    g.verify()
    return g


def feeds_for(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


def assert_matches(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], rtol: float = 5e-5) -> None:
    """Every output within rtol x max(1, max|ref|) of the reference (and finite)."""
    assert set(got) == set(ref)
    for k, r in ref.items():
        assert got[k].shape == r.shape, k
        assert np.isfinite(got[k]).all(), k
        scale = max(1.0, float(np.abs(r).max()))
        err = float(np.abs(got[k] - r).max())
        assert err <= rtol * scale, f"{k}: max error {err:.3g} > {rtol:g} x {scale:.3g}"
