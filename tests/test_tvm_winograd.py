"""Winograd F(2x2,3x3) and F(4x4,3x3) conv kernels of the TVM CPU backend against the NumPy reference.

Each single-conv graph is lowered with `lower_winograd` (not lower_node's default choice), scheduled
by build.py's "winograd" branch (a degrade to the generic schedule fails the test) and run through
TvmExecutable. Tolerance: max error <= 1e-4 x max|ref| for both tile sizes (measured: F(2x2) ~1e-6,
F(4x4) ~5e-6 at C = 512, with the 0, -1, 1, 1/2, -2 interpolation points). The AArch64 (NEON,
vec 4) build runs under qemu where the cross tools are installed.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("tvm")

from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm import winograd as W  # noqa: E402
from lpdc.backends.tvm.build import Plan, Step, build_module  # noqa: E402
from lpdc.backends.tvm.executable import TvmExecutable  # noqa: E402
from lpdc.backends.tvm.target import tvm_target  # noqa: E402
from lpdc.errors import LpdcUnsupportedError  # noqa: E402
from lpdc.ir import Graph, TensorType  # noqa: E402
from test_tvm_sparse_conv import conv_graph  # noqa: E402
from test_tvm_sparse_fc import _no_schedule_fallback  # noqa: E402

TOL = 1e-4


def winograd_plan(g: Graph, m: int, vec: int) -> Plan:
    """The plan of a single-conv graph whose conv runs the Winograd kernel."""
    (node,) = [n for n in g.nodes if n.op == "conv"]
    low = W.lower_winograd(node, g, vec, m)
    return Plan([Step(node, "wino", low.args)], {"wino": low})


def rel_error(g: Graph, m: int, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    (out,) = g.outputs
    ref = compile_numpy(g).run(feeds)[out.name]
    tt = tvm_target("x86")
    plan = winograd_plan(g, m, max(tt.vec, 4))
    with _no_schedule_fallback():
        lib = build_module(plan, tt)
    got = TvmExecutable(g, plan, lib, "x86", True).run(feeds)[out.name]
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max()) / float(np.abs(ref).max())


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("c", "hw"), [(64, 56), (128, 28), (256, 14), (512, 7)])
def test_resnet18_layers(m: int, c: int, hw: int) -> None:
    assert rel_error(conv_graph(c, c, (hw, hw), (3, 3), pad=(1,), bias=True, act="relu"), m) <= TOL


CASES = [  # c, k, hw, pad, batch, bias, act, residual: odd sizes, partial tiles, every epilogue
    (20, 24, (13, 11), (1,), 1, True, "relu", False),
    (20, 24, (13, 11), (0, 1, 2, 0), 1, False, "none", True),
    (8, 16, (9, 10), (0,), 2, True, "leaky_relu", True),
    (3, 5, (6, 7), (2, 0, 1, 3), 1, True, "prelu", False),
    (16, 32, (4, 4), (1,), 3, False, "relu6", False),
    (17, 19, (7, 9), (1,), 1, True, "none", False),  # primes above 16: scalar channel loops
    (8, 16, (10, 10), (0,), 1, False, "relu", False),  # whole tiles, no border: no pad stage at all
]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(("c", "k", "hw", "pad", "batch", "bias", "act", "residual"), CASES)
def test_odd_shapes_and_epilogues(m, c, k, hw, pad, batch, bias, act, residual) -> None:
    g = conv_graph(c, k, hw, (3, 3), pad=pad, batch=batch, bias=bias, act=act, residual=residual)
    assert rel_error(g, m) <= TOL


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_compute_a_correlation(m: int) -> None:
    """A^T [(G g) * (B^T d)] == the 1-D correlation y_i = sum_k g_k d_(i+k), in float64."""
    at, bt, gm = (np.array(x, dtype=np.float64) for x in W.MATRICES[m])
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
    np.testing.assert_allclose(at @ ((gm @ g) * (bt @ d)), np.correlate(d, g, "valid"), rtol=0, atol=1e-12)


def test_transform_weight_layout() -> None:
    """U[a, b, k // kb, c, k % kb] = (G w[k, c] G^T)[a, b]; filters past K are zero."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20, 3, 3, 3)).astype(np.float32)
    u = W.transform_weight(w, 2, kb=16)
    assert u.shape == (4, 4, 2, 3, 16) and u.dtype == np.float32
    gm = np.array(W.MATRICES[2][2], dtype=np.float64)
    np.testing.assert_allclose(u[:, :, 1, 2, 3], gm @ w[19, 2] @ gm.T, rtol=1e-6)
    assert not u[:, :, 1, :, 4:].any()


def test_lowered_kernel_and_key() -> None:
    g = conv_graph(16, 32, (8, 8), (3, 3), pad=(1,), bias=True, act="relu")
    (node,) = [n for n in g.nodes if n.op == "conv"]
    low2, low4 = W.lower_winograd(node, g, 16, 2), W.lower_winograd(node, g, 16, 4)
    assert low2.schedule == "winograd" and low2.info["m"] == 2
    assert low2.key == W.lower_winograd(node, g, 16, 2).key != low4.key
    assert [t.name for t in low2.tensors] == ["x", "U", "bias", "out"]
    assert len(low2.args) == 3 and low2.args[0] is node.inputs[0]


@pytest.mark.parametrize(("ks", "stride", "dilation", "group", "m"), [
    ((3, 3), 2, 1, 1, 2), ((3, 3), 1, 2, 1, 2), ((1, 1), 1, 1, 1, 2), ((5, 5), 1, 1, 1, 4), ((3, 3), 1, 1, 2, 2),
    ((3, 3), 1, 1, 1, 3)])
def test_unsupported_convs_are_refused(ks, stride, dilation, group, m) -> None:
    g = Graph("conv")
    x = g.add_input("x", TensorType((1, 4, 9, 9), "f32"))
    w = g.add_const(np.ones((4, 4 // group, *ks), np.float32), "w")
    g.set_outputs([g.op("conv", x, w, name="conv", stride=[stride] * 2, pad=[1], dilation=[dilation] * 2,
                        group=group)])
    with pytest.raises(LpdcUnsupportedError):
        W.lower_winograd(g.nodes[-1], g, 16, m)


def test_default_tiles_fit_registers_and_cover_the_layer() -> None:
    from lpdc.backends.tvm.compute import ConvShape

    for c, hw, vec in ((64, 56, 16), (512, 7, 16), (20, 13, 16), (24, 11, 4)):
        s = ConvShape(1, hw, hw, c, c, 3, 3, hw, hw, (1, 1), (1, 1, 1, 1), (1, 1), 1)
        for m in (2, 4):
            t = W.default_tiles(s, m, vec)
            p = W.tile_counts(s, m)[2]
            assert t.pt * t.kb // vec <= 24 and t.kb % vec == 0
            assert t.pp % t.pt == 0 and p <= t.pp < p + t.pt and t.kp % t.kb == 0 and c <= t.kp < c + t.kb


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64")),
                    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64")
@pytest.mark.parametrize("m", [2, 4])
def test_neon_build_under_qemu(m: int, monkeypatch) -> None:
    """vec 4 tiles, serial loops, Cortex-A72: the same template's numerics as AArch64 code."""
    from lpdc.backends.tvm import qemu

    g = conv_graph(12, 20, (9, 7), (3, 3), pad=(1, 0, 2, 1), bias=True, act="relu", residual=True)
    tt = tvm_target("a72")
    plan = winograd_plan(g, m, tt.vec)
    monkeypatch.setattr(qemu, "cross_build",
                        lambda graph, device, knobs, fuse_depthwise: (plan, build_module(plan, tt, parallel=False)))
    rng = np.random.default_rng(1)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    (out,) = g.outputs
    ref = compile_numpy(g).run(feeds)[out.name]
    with _no_schedule_fallback():
        got = qemu.run_under_qemu(g, feeds, "a72")[out.name]
    assert float(np.abs(got - ref).max()) <= TOL * float(np.abs(ref).max())
