"""Sparse primitives: equal to dense execution of the same zeroed weights, and chosen by primitive
selection only where their (measured or given) cost beats the dense ones."""

from __future__ import annotations

import lpdc
import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.primitives import get_primitive
from lpdc.backends.numpy.primitives.sparse_ext import sparse_matrix
from lpdc.ir import Graph, TensorType
from lpdc.passes.select.build import SPARSE_MARGIN
from lpdc.passes.select.choices import primitive_choices
from lpdc.passes.select.select_primitives import select, select_config
from lpdc.passes.sparsify import magnitude_prune
from lpdc.tools.zoo import build

FC_SPARSE = ["spmv", "spmv_csc", "spmv_coo", "spmv_bsr"]
CONV_SPARSE = ["sparse_csr", "sparse_direct"]


def _layer(op: str, xs: tuple, ws: tuple, sparsity: float, seed: int = 0, **attrs) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph(op)
    x = g.add_input("x", TensorType(xs))
    w = g.add_const(rng.standard_normal(ws).astype(np.float32), "w")
    b = g.add_const(rng.standard_normal(ws[0]).astype(np.float32), "b")
    g.set_outputs([g.op(op, x, w, b, name="layer", **attrs)])
    return magnitude_prune(g, sparsity)


def _with_primitive(g: Graph, prim: str) -> np.ndarray:
    h = g.copy()
    node = next(n for n in h.nodes if n.name == "layer")
    node.attrs = {**node.attrs, "primitive": prim}
    feed = {"x": np.random.default_rng(7).standard_normal(h.inputs[0].type.shape).astype(np.float32)}
    return next(iter(compile_numpy(h).run(feed).values()))


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-6


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("prim", FC_SPARSE)
def test_sparse_fc_equals_dense(prim: str, batch: int) -> None:
    g = _layer("fully_connected", (batch, 48), (32, 48), 0.8, activation="relu")
    ref = _with_primitive(g, "gemm")
    _close(_with_primitive(g, prim), ref)
    _close(_with_primitive(g, ""), ref)  # the reference kernel too


@pytest.mark.parametrize("prim", CONV_SPARSE)
@pytest.mark.parametrize("geom", [dict(ws=(8, 4, 3, 3), pad=[1, 1, 1, 1]), dict(ws=(8, 4, 1, 1)),
                                  dict(ws=(6, 4, 3, 2), stride=[2, 1], dilation=[1, 2], pad=[0, 1, 2, 0])])
def test_sparse_conv_equals_dense(prim: str, geom: dict) -> None:
    geom = dict(geom)
    ws = geom.pop("ws")
    for n in (1, 2):
        g = _layer("conv", (n, 4, 9, 10), ws, 0.75, activation="relu", **geom)
        _close(_with_primitive(g, prim), _with_primitive(g, "im2col"))


def test_pruned_model_sparse_equals_dense() -> None:
    """A whole pruned network run with sparse primitives equals its dense run."""
    g = lpdc.prune(build("lenet"), 0.9)
    rng = np.random.default_rng(0)
    feed = {"data": rng.standard_normal(g.inputs[0].type.shape).astype(np.float32)}
    ref = next(iter(compile_numpy(g).run(feed).values()))
    sparse = g.copy()
    for n in sparse.nodes:
        if n.op in ("conv", "fully_connected"):
            n.attrs = {**n.attrs, "primitive": "sparse_direct" if n.op == "conv" else "spmv_csc"}
    _close(next(iter(compile_numpy(sparse).run(feed).values())), ref)


def test_formats_roundtrip() -> None:
    w = np.random.default_rng(0).standard_normal((8, 12)).astype(np.float32)
    w[np.abs(w) < 1] = 0
    for fmt in ("csr", "csc", "coo", "bsr"):
        np.testing.assert_array_equal(sparse_matrix(w, fmt).toarray(), w)


def test_sparse_only_offered_when_sparse() -> None:
    dense = _layer("fully_connected", (1, 64), (32, 64), 0.0)
    pruned = _layer("fully_connected", (1, 64), (32, 64), 0.9)
    names = lambda g: {p.name for _, p in primitive_choices(next(n for n in g.nodes if n.name == "layer"), g)}  # noqa: E731
    assert not names(dense) & set(FC_SPARSE)
    assert set(FC_SPARSE) <= names(pruned)


class _Costs:
    """A cost source with fixed times per primitive (labels 'prim@layout')."""

    def __init__(self, times: dict[str, float]) -> None:
        self.times = times

    def lookup(self, signature: str, choice: str) -> float | None:
        return self.times.get(choice.split("@")[0], 1.0)


@pytest.mark.parametrize("spmv_s, want", [(1e-3, "spmv"), (3.5e-3, "gemv"), (4.5e-3, "gemv")])
def test_pbqp_picks_sparse_only_when_faster(spmv_s: float, want: str) -> None:
    """Given costs: spmv is picked when it beats the dense choice by the margin, never when slower."""
    g = _layer("fully_connected", (1, 64), (32, 64), 0.9)
    times = {"gemv": 4e-3, "gemm": 5e-3, "spmv": spmv_s, "spmv_csc": 9e-3, "spmv_coo": 9e-3, "spmv_bsr": 9e-3}
    plans = []
    with select_config(costs="cache", source=_Costs(times), on_plan=plans.append):
        select(g)
    assert plans[0].choices["layer"].split("@")[0] == want
    assert 4e-3 / 3.5e-3 < SPARSE_MARGIN  # the 3.5 ms case is within the margin: dense wins the near-tie


def test_pbqp_measured_picks_sparse_for_very_sparse_fc(tmp_path) -> None:
    """Measured: a 99%-sparse 2048x2048 FC runs sparse (the FLOP gap is 100x, far above the noise of
    a shared machine; at 97% a busy neighbour once made dense look faster)."""
    g = _layer("fully_connected", (1, 2048), (2048, 2048), 0.99)
    plans = []
    with select_config(costs="measure", cache_path=tmp_path / "c.json", on_plan=plans.append):
        select(g)
    prim = plans[0].choices["layer"].split("@")[0]
    assert get_primitive(prim).family == "sparse"
