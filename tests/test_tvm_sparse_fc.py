"""Sparse (sliced-ELL) fully-connected kernels of the TVM x86 backend against the NumPy reference.

Layers are magnitude-pruned with lpdc.prune; the built plan says which kernel each FC got, so the
tests also pin the selection: sparse well below MAX_SPARSE_DENSITY, dense at 0% / 30% / 50% and
for a layer whose rows are so uneven that the padded form would read as much as the dense one.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest

pytest.importorskip("tvm")

import lpdc  # noqa: E402
from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm import compile_tvm  # noqa: E402
from lpdc.backends.tvm.sparse_fc import effective_density, ell_pack  # noqa: E402
from lpdc.ir import Graph, TensorType  # noqa: E402


def fc_graph(k: int, n: int, *, batch: int = 1, bias: bool = False, act: str = "none", residual: bool = False,
             image: tuple[int, int, int] | None = None, seed: int = 0) -> Graph:
    """x -> fully_connected(w, [b], [residual input], act); `image` = (C, H, W) gives a 4-D input."""
    rng = np.random.default_rng(seed)
    g = Graph("fc")
    x = g.add_input("x", TensorType((batch, *image) if image else (batch, k), "f32"))
    w = g.add_const(rng.standard_normal((n, k)).astype(np.float32) / np.sqrt(k), "w")
    b = g.add_const(rng.standard_normal(n).astype(np.float32), "b") if bias else None
    r = g.add_input("r", TensorType((batch, n), "f32")) if residual else None
    y = g.op("fully_connected", x, w, b, r, name="fc", activation=act)
    g.set_outputs([y])
    return g


def run_both(g: Graph, seed: int = 1):
    """TVM vs NumPy within 1e-5 of the output's scale; the kernel's own schedule must have applied."""
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    ref = compile_numpy(g).run(feeds)["fc"]
    with _no_schedule_fallback():
        exe = compile_tvm(g, "x86")
    got = exe.run(feeds)["fc"]
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max())
    assert err <= 1e-5 * float(np.abs(ref).max()) + 1e-6, f"max error {err}"
    return exe


@contextlib.contextmanager
def _no_schedule_fallback():
    """Fail when build.py degrades a kernel to the generic schedule (it only logs a warning)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("lpdc.backends.tvm.build")
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
    assert not [r for r in records if "does not fit" in r.getMessage()], [r.getMessage() for r in records]


def fc_schedule(exe) -> str:
    (step,) = [s for s in exe.plan.steps if s.node.op == "fully_connected"]
    return exe.plan.kernels[step.func].schedule


CASES = [  # k, n, sparsity, batch, bias, act, residual
    (1024, 256, 0.5, 1, False, "none", False),
    (2048, 512, 0.8, 1, True, "none", False),
    (4096, 1000, 0.9, 1, True, "relu", False),
    (1024, 1000, 0.95, 1, False, "relu", True),
    (3072, 384, 0.9, 2, True, "none", True),
    (4096, 256, 0.95, 4, False, "none", False),
]


@pytest.mark.parametrize(("k", "n", "sparsity", "batch", "bias", "act", "residual"), CASES)
def test_pruned_fc_matches_reference(k, n, sparsity, batch, bias, act, residual):
    g = lpdc.prune(fc_graph(k, n, batch=batch, bias=bias, act=act, residual=residual), sparsity, method="magnitude")
    exe = run_both(g)
    assert fc_schedule(exe) == ("sparse_fc" if sparsity >= 0.8 else "fc")


def test_flattened_image_input_sparse():
    """A 4-D NCHW input arrives NHWC: the column permutation must carry into the ELL columns."""
    g = lpdc.prune(fc_graph(16 * 8 * 8, 128, image=(16, 8, 8), bias=True, act="relu"), 0.9, method="magnitude")
    assert fc_schedule(run_both(g)) == "sparse_fc"


@pytest.mark.parametrize(("sparsity", "kind"), [(0.0, "fc"), (0.3, "fc"), (0.9, "sparse_fc")])
def test_selection_by_density(sparsity, kind):
    g = fc_graph(2048, 256, bias=True)
    if sparsity:
        g = lpdc.prune(g, sparsity, method="magnitude")
    assert fc_schedule(run_both(g)) == kind


def test_uneven_rows_stay_dense():
    """90% zeros overall, but one dense row would pad every row of the ELL form to K: dense wins."""
    g = lpdc.prune(fc_graph(1024, 128), 0.9, method="magnitude")
    wv = next(n for n in g.nodes if n.op == "fully_connected").inputs[1]
    w = g.const_data(wv).copy()
    w[0] = 1.0 / 32
    g.params[wv.producer.attrs["param"]] = w
    assert (w == 0).mean() > 0.85 and effective_density(w) == 1.0
    assert fc_schedule(run_both(g)) == "fc"


def test_ell_pack_roundtrip():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 50)).astype(np.float32) * (rng.random((32, 50)) < 0.2)
    vals, cols = ell_pack(w, 8)
    assert vals.shape == cols.shape == (4, int((w != 0).sum(1).max()), 8) and cols.dtype == np.uint16
    back = np.zeros_like(w)
    for s in range(4):
        for lane in range(8):
            np.add.at(back[s * 8 + lane], cols[s, :, lane], vals[s, :, lane])
    np.testing.assert_array_equal(back, w)
