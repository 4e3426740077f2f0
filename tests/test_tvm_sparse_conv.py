"""Sparse direct conv of the TVM x86 backend and compile_tvm's sparse= modes, against the NumPy reference.

Layers are magnitude-pruned with lpdc.prune. Numerics use sparse="on" (the sparse kernel
whatever its speed); the modes are pinned through the built plan and `exe.sparse_choices`; the
"measure" decision logic is checked both with real timings (the pick is the faster measured
kernel) and with fixed fake timings in each direction (no noise from the shared machine).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

import lpdc  # noqa: E402
from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm import compile_tvm  # noqa: E402
from lpdc.backends.tvm import sparse_select as SS  # noqa: E402
from lpdc.backends.tvm.compute import ConvShape  # noqa: E402
from lpdc.backends.tvm.sparse_conv import effective_density, ell_pack, geometry  # noqa: E402
from lpdc.errors import LpdcError, LpdcTargetError  # noqa: E402
from lpdc.ir import Graph, TensorType  # noqa: E402
from lpdc.ir.ops._shape import pads4  # noqa: E402
from test_tvm_sparse_fc import _no_schedule_fallback  # noqa: E402


def conv_graph(c: int, k: int, hw: tuple[int, int], ks: tuple[int, int], *, stride: int = 1,
               pad: tuple[int, ...] = (0,), dilation: int = 1, batch: int = 1, bias: bool = False,
               act: str = "none", residual: bool = False, fc: int = 0, seed: int = 0) -> Graph:
    """x -> conv(w, [b], [residual], act) [-> fully_connected(fc outputs)]."""
    rng = np.random.default_rng(seed)
    g = Graph("conv")
    x = g.add_input("x", TensorType((batch, c, *hw), "f32"))
    w = g.add_const(rng.standard_normal((k, c, *ks)).astype(np.float32) / np.sqrt(c * ks[0] * ks[1]), "w")
    b = g.add_const(rng.standard_normal(k).astype(np.float32), "b") if bias else None
    pt, pl, pb, pr = pads4(pad)
    oh = (hw[0] + pt + pb - dilation * (ks[0] - 1) - 1) // stride + 1
    ow = (hw[1] + pl + pr - dilation * (ks[1] - 1) - 1) // stride + 1
    r = g.add_input("r", TensorType((batch, k, oh, ow), "f32")) if residual else None
    slope = g.add_const(rng.random((k, 1, 1)).astype(np.float32), "slope") if act == "prelu" else None
    y = g.op("conv", x, w, b, r, slope, name="conv", stride=[stride, stride], pad=list(pad),
             dilation=[dilation, dilation], activation=act, act_alpha=0.1)
    if fc:
        y = g.op("fully_connected", y, g.add_const(rng.standard_normal((fc, k * oh * ow)).astype(np.float32), "wf"),
                 name="fc")
    g.set_outputs([y])
    return g


def run_both(g: Graph, sparse: str = "on", seed: int = 1):
    """TVM vs NumPy within 1e-5 of the output's scale (no schedule may degrade to generic)."""
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    (out,) = g.outputs
    ref = compile_numpy(g).run(feeds)[out.name]
    with _no_schedule_fallback():
        exe = compile_tvm(g, "x86", sparse=sparse)
    got = exe.run(feeds)[out.name]
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max())
    assert err <= 1e-5 * float(np.abs(ref).max()) + 1e-6, f"max error {err}"
    return exe


def schedules(exe) -> dict[str, str]:
    """node -> kernel kind; a Winograd kernel (the default dense kernel of some 3x3 convs) is "conv"."""
    kinds = {s.node.name: exe.plan.kernels[s.func].schedule for s in exe.plan.steps if s.func}
    return {n: "conv" if k == "winograd" else k for n, k in kinds.items()}


CASES = [  # c, k, hw, ks, stride, pad, dilation, batch, bias, act, residual, sparsity
    (16, 32, (12, 12), (3, 3), 1, (1,), 1, 1, True, "relu", False, 0.5),
    (16, 24, (13, 11), (3, 3), 2, (1,), 1, 1, False, "none", True, 0.75),
    (32, 48, (7, 7), (1, 1), 1, (0,), 1, 1, True, "relu6", False, 0.9),
    (24, 16, (10, 10), (1, 1), 2, (0,), 1, 2, False, "prelu", False, 0.95),
    (8, 16, (20, 9), (3, 3), 1, (2,), 2, 1, True, "leaky_relu", True, 0.8),
    (12, 20, (9, 14), (3, 2), 2, (1, 0, 2, 1), 1, 1, True, "none", False, 0.9),
]


@pytest.mark.parametrize(("c", "k", "hw", "ks", "stride", "pad", "dilation", "batch", "bias", "act", "residual",
                          "sparsity"), CASES)
def test_sparse_conv_matches_reference(c, k, hw, ks, stride, pad, dilation, batch, bias, act, residual, sparsity):
    g = conv_graph(c, k, hw, ks, stride=stride, pad=pad, dilation=dilation, batch=batch, bias=bias, act=act,
                   residual=residual)
    g = lpdc.prune(g, sparsity, method="magnitude")
    exe = run_both(g)
    assert schedules(exe)["conv"] == "sparse_conv"
    assert exe.sparse_choices["conv"]["picked"] == "sparse" and exe.sparse_choices["conv"]["how"] == "forced"


def test_ell_pack_offsets_decode():
    """Every (value, offset) pair names its weight: offset -> (c, phase, row, column shift)."""
    s = ConvShape(1, 9, 14, 6, 5, 3, 3, 5, 6, (2, 2), (1, 1, 1, 1), (1, 2), 1)
    geo = geometry(s, 16)
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32) * (rng.random((5, 6, 3, 3)) < 0.3)
    vals, offs = ell_pack(w, s, geo)
    assert vals.shape == offs.shape == (5, int((w.reshape(5, -1) != 0).sum(1).max()))
    assert effective_density(w) == vals.shape[1] / 54
    back = np.zeros_like(w)
    for o in range(5):
        for v, off in zip(vals[o], offs[o], strict=True):
            shift, row, plane = off % geo.wq, off // geo.wq % geo.hp, off // (geo.wq * geo.hp)
            assert plane % 2 == 0  # column dilation 2, stride 2: dx = 2 kw is phase 0, shift kw
            back[o, plane // 2, row, shift] += v
    np.testing.assert_array_equal(back, w)


def test_modes_off_and_auto():
    g = lpdc.prune(conv_graph(16, 32, (8, 8), (3, 3), pad=(1,), bias=True, fc=64), 0.9, method="magnitude")
    off = run_both(g, "off")
    assert schedules(off) == {"conv": "conv", "fc": "fc"}
    assert {n: c["picked"] for n, c in off.sparse_choices.items()} == {"conv": "dense", "fc": "dense"}
    auto = compile_tvm(g, "x86")  # today's behaviour: FC by its density threshold, conv never sparse
    assert schedules(auto) == {"conv": "conv", "fc": "sparse_fc"}
    assert set(auto.sparse_choices) == {"fc"} and auto.sparse_choices["fc"]["how"] == "threshold"
    on = lpdc.compile(g, "x86", sparse="on")  # lpdc.compile passes the option through
    assert {n: k for n, k in schedules(on).items() if n in ("conv", "fc")} == {"conv": "sparse_conv", "fc": "sparse_fc"}


def test_measure_keeps_the_faster_kernel():
    """Real timings: both kernels timed, the pick is the smaller time; a dense layer is not timed."""
    g = lpdc.prune(conv_graph(32, 32, (14, 14), (3, 3), pad=(1,), fc=32), 0.95, method="magnitude")
    dense_conv = conv_graph(8, 16, (6, 6), (1, 1))  # unpruned: effective density 1, never timed
    exe, exe_dense = run_both(g, "measure"), run_both(dense_conv, "measure")
    sched = schedules(exe)
    for name in ("conv", "fc"):
        ch = exe.sparse_choices[name]
        assert ch["how"] == "measured" and ch["dense_s"] > 0 and ch["sparse_s"] > 0, ch
        assert ch["picked"] == ("sparse" if ch["sparse_s"] < ch["dense_s"] else "dense")
        assert sched[name] == ("sparse_" if ch["picked"] == "sparse" else "") + name
    assert exe_dense.sparse_choices["conv"] == {"picked": "dense", "dense_s": None, "sparse_s": None,
                                               "density": 1.0, "how": "too dense"}
    n = len(SS._TIMES)
    again = compile_tvm(g, "x86", sparse="measure")  # same kernels: timed once per process
    assert len(SS._TIMES) == n and again.sparse_choices == exe.sparse_choices


@pytest.mark.parametrize("faster", ["sparse", "dense"])
def test_measure_follows_the_timings(monkeypatch, faster):
    """Fixed fake timings: whichever kernel is faster is kept, in both directions."""
    def fake(low, tt):
        return 1e-3 if low.schedule.startswith("sparse") == (faster == "sparse") else 2e-3

    monkeypatch.setattr(SS, "time_lowered", fake)
    g = lpdc.prune(conv_graph(16, 16, (8, 8), (3, 3), pad=(1,), fc=16), 0.6, method="magnitude")
    exe = run_both(g, "measure")
    for name in ("conv", "fc"):
        ch = exe.sparse_choices[name]
        assert ch["picked"] == faster and ch["how"] == "measured"
        assert min(ch["dense_s"], ch["sparse_s"]) == ch[f"{faster}_s"] == 1e-3
        assert schedules(exe)[name] == ("sparse_" if faster == "sparse" else "") + name


def test_bad_modes():
    g = conv_graph(4, 8, (6, 6), (3, 3))
    with pytest.raises(LpdcError, match="sparse must be one of"):
        compile_tvm(g, "x86", sparse="fast")
    with pytest.raises(LpdcTargetError, match="measure"):
        compile_tvm(g, "a72", sparse="measure")
