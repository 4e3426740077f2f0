"""Hand-written OpenCL kernels (softmax, transpose, reshapes, slice) against the NumPy reference.

The layout cases matter most: 4-D activations (layout None/NCHW, including a transpose's or a
reshape's 4-D output) are stored NHWC on the device, other values in their logical shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from lpdc.backends.opencl import runtime

if not runtime.available():
    pytest.skip("no working OpenCL device (install pocl-opencl-icd)", allow_module_level=True)

from lpdc.backends.numpy import compile_numpy
from lpdc.backends.opencl import compile_opencl
from lpdc.backends.opencl.executable import from_device_layout, to_device_layout
from lpdc.backends.opencl.handwritten import hand_kernel
from lpdc.backends.tvm.lower import nhwc_shape
from lpdc.ir import Graph, TensorType


def _graph(shape: tuple[int, ...], ops: list[tuple[str, dict]], layout: str | None = None) -> Graph:
    """x -> op0 -> op1 ... -> y, each node named n0, n1, ..."""
    g = Graph("hand")
    v = g.add_input("x", TensorType(shape, "f32", layout))
    for i, (op, attrs) in enumerate(ops):
        v = g.op(op, v, name=f"n{i}", **attrs)
    g.outputs = [v]
    return g


def _feeds(g: Graph, scale: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: (rng.standard_normal(v.type.shape) * scale).astype(np.float32) for v in g.inputs}


def _close(got: np.ndarray, ref: np.ndarray, exact: bool) -> None:
    assert got.shape == ref.shape
    if exact:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def _run_hand(g: Graph, node_name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run one node's hand kernel directly, whether or not the TVM side would take the node first."""
    node = next(n for n in g.nodes if n.name == node_name)
    h = hand_kernel(node, g)
    assert h is not None, f"no hand kernel for {node.op} {node.attrs}"
    rt = runtime.get_runtime()
    k = rt.kernel(h.source, h.name, h.global_size, h.local_size)
    x = node.inputs[0]
    out = rt.empty(int(np.prod(nhwc_shape(node.output))) * 4)
    rt.run(k, [rt.upload(to_device_layout(x, feeds[x.name])), *[rt.upload(c) for c in h.consts], out])
    return from_device_layout(node.output, rt.download(out, nhwc_shape(node.output)))


def _check(g: Graph, exact: bool, scale: float = 1.0, executable: bool = True) -> None:
    """Same numbers as the reference from the whole executable (every node on the device, hand-written
    or TVM) and, for a one-node graph, from the node's hand kernel run on its own."""
    feeds = _feeds(g, scale)
    want = compile_numpy(g).run(feeds)
    if executable:
        exe = compile_opencl(g)
        assert not exe.fallbacks, exe.fallbacks
        got = exe.run(feeds)
        for k, ref in want.items():
            _close(got[k], ref, exact)
    if len(g.nodes) == 1:
        _close(_run_hand(g, g.nodes[0].name, feeds), want[g.outputs[0].name], exact)


# ---- softmax ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis", "layout"), [
    ((2, 5, 3, 4), 1, None), ((2, 5, 3, 4), -1, None), ((2, 5, 3, 4), 2, None), ((3, 5, 2, 2), 0, None),
    ((1, 21, 1, 1), 1, "NCHW"), ((2, 3, 4, 5), 3, "NHWC"), ((6, 7), 0, None), ((4, 1917, 3), 1, None),
    ((2, 3, 4, 5, 6), -2, None), ((7,), 0, None),
])
def test_softmax_any_axis(op, shape, axis, layout):
    _check(_graph(shape, [(op, {"axis": axis})], layout), exact=False, scale=8.0)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(3, 1000), (5, 21), (1, 1)])
def test_softmax_matrix(op, shape):
    """2-D along the last axis goes to TVM in the executable; the hand kernel must agree as well."""
    _check(_graph(shape, [(op, {"axis": 1})]), exact=False, scale=30.0)


def test_softmax_is_max_subtracted():
    g = _graph((2, 4, 3, 3), [("softmax", {"axis": 1})])
    feeds = {"x": np.full((2, 4, 3, 3), 200.0, np.float32)}
    feeds["x"][:, 2] = 1000.0
    got = compile_opencl(g).run(feeds)[g.outputs[0].name]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, compile_numpy(g).run(feeds)[g.outputs[0].name], rtol=1e-6, atol=0)


# ---- transpose -------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "perm", "layout"), [
    ((1, 12, 5, 5), [0, 2, 3, 1], None),  # SSD's permute: the 4-D output is stored NHWC as well
    ((2, 3, 4, 5), [0, 3, 1, 2], None), ((2, 3, 4, 5), [3, 2, 1, 0], None), ((2, 3, 4, 5), [], None),
    ((2, 3, 4, 5), [1, 0, 3, 2], "NHWC"), ((5, 7), [1, 0], None), ((2, 3, 4), [2, 0, 1], None),
    ((2, 3, 4, 5, 2), [4, 0, 3, 1, 2], None), ((2, 1, 3, 2, 2, 3), [5, 3, 1, 0, 4, 2], None),
])
def test_transpose(shape, perm, layout):
    _check(_graph(shape, [("transpose", {"perm": perm})], layout), exact=True)


def test_transpose_into_rank3_and_back():
    """NHWC-stored in, logical 3-D in the middle, NHWC-stored out again."""
    ops = [("transpose", {"perm": [0, 2, 3, 1]}), ("reshape", {"shape": [2, -1, 6]}),
           ("transpose", {"perm": [0, 2, 1]}), ("reshape", {"shape": [2, 6, 4, 5]})]
    _check(_graph((2, 6, 4, 5), ops), exact=True)


# ---- reshape, flatten, squeeze, unsqueeze ----------------------------------------------------
@pytest.mark.parametrize(("shape", "ops", "layout"), [
    ((2, 3, 4, 5), [("reshape", {"shape": [2, -1]})], None),
    ((2, 3, 4, 5), [("reshape", {"shape": [6, 20]})], None),
    ((2, 3, 4, 5), [("reshape", {"shape": [2, 5, 4, 3]})], None),
    ((2, 3, 4, 5), [("reshape", {"shape": [0, 0, 20, 1]})], None),
    ((2, 3, 4, 5), [("reshape", {"shape": [3, 2, 5, 2, 2]})], None),
    ((6, 20), [("reshape", {"shape": [2, 3, 4, 5]})], None),
    ((2, 3, 4, 5), [("reshape", {"shape": [4, 5, 2, 3]})], "NHWC"),
    ((4, 30), [("reshape", {"shape": [2, 3, 20]})], None),
    ((2, 3, 4, 5), [("flatten", {"axis": 2})], None),
    ((2, 3, 4, 5), [("flatten", {"axis": 0})], None),
    ((2, 3, 4, 5), [("flatten", {"axis": 4})], None),
    ((2, 3, 4), [("flatten", {"axis": 2})], None),
    ((1, 3, 1, 5), [("squeeze", {"axes": []})], None),
    ((2, 3, 1, 5), [("squeeze", {"axes": [2]})], None),
    ((2, 1, 3, 4, 5), [("squeeze", {"axes": [1]})], None),
    ((2, 3, 4), [("unsqueeze", {"axes": [0]})], None),
    ((2, 3, 4, 5), [("unsqueeze", {"axes": [2]})], None),
    ((3, 4), [("unsqueeze", {"axes": [0, -1]})], None),
])
def test_reshapes(shape, ops, layout):
    _check(_graph(shape, ops, layout), exact=True)


def test_flatten_of_activation():
    """4-D flatten from axis 1 goes to TVM in the executable; the hand kernel must agree as well."""
    _check(_graph((2, 3, 4, 5), [("flatten", {"axis": 1})]), exact=True)


# ---- slice -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "attrs", "layout"), [
    ((2, 8, 6, 7), {"starts": [2], "ends": [7], "axes": [1], "steps": []}, None),
    ((2, 8, 6, 7), {"starts": [1, -1], "ends": [6, -100], "axes": [2, -1], "steps": [2, -2]}, None),
    ((2, 8, 6, 7), {"starts": [0, 1, 0, 0], "ends": [1, 100, 5, 7], "axes": [], "steps": [1, 3, 1, 1]}, None),
    ((2, 8, 6, 7), {"starts": [1], "ends": [4], "axes": [3], "steps": []}, "NHWC"),
    ((9, 10), {"starts": [8, 1], "ends": [0, 10], "axes": [0, 1], "steps": [-3, 4]}, None),
    ((3, 4, 5, 6, 7), {"starts": [1, 2], "ends": [3, 6], "axes": [1, 4], "steps": [1, 2]}, None),
])
def test_slice(shape, attrs, layout):
    _check(_graph(shape, [("slice", attrs)], layout), exact=True)


def test_empty_slice():
    """Zero elements out: the kernel must write nothing (run alone: TVM's scheduler fails on it)."""
    _check(_graph((2, 8, 6, 7), [("slice", {"starts": [3], "ends": [1], "axes": [3], "steps": []})]),
           exact=True, executable=False)


# ---- SSD ---------------------------------------------------------------------------------------
def test_ssd_runs_without_host_fallbacks():
    from lpdc.passes.manager import PassManager, pipeline
    from lpdc.tools.zoo import build

    g = build("ssd_mobilenet")
    PassManager(pipeline(2)).run(g)
    ops = {n.op for n in g.nodes}
    assert {"transpose", "reshape", "softmax"} <= ops
    exe = compile_opencl(g)
    assert not exe.fallbacks, exe.fallbacks
    moves = [n for n in g.nodes if n.op in ("transpose", "reshape", "softmax")]
    assert all(hand_kernel(n, g) is not None for n in moves)  # whichever side takes them today
    feeds = _feeds(g)
    got, want = exe.run(feeds), compile_numpy(g).run(feeds)
    for k, ref in want.items():
        np.testing.assert_allclose(got[k], ref, rtol=0, atol=1e-4 * max(float(np.abs(ref).max()), 1e-6))
