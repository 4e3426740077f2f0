"""Property tests: the NumPy reference kernels equal naive loop implementations on random configs."""

from __future__ import annotations

import naive
import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from lpdc.backends.numpy import compile_numpy
from lpdc.ir import Graph, TensorType


def _run(g: Graph, **inputs: np.ndarray) -> np.ndarray:
    return next(iter(compile_numpy(g).run(inputs).values()))


def _close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(float(np.abs(want).max()), 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


@st.composite
def conv_configs(draw):
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    if depthwise:
        cg, og = 1, 1
        group = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    assume(h + pad[0] + pad[2] >= dilation[0] * (kh - 1) + 1)
    assume(w + pad[1] + pad[3] >= dilation[1] * (kw - 1) + 1)
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    return dict(n=n, c=cg * group, o=og * group, group=group, k=(kh, kw), stride=stride, dilation=dilation,
                pad=pad, hw=(h, w), bias=bias)


@given(conv_configs(), st.integers(0, 2**31 - 1))
def test_conv_equals_naive_loops(cfg, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg["n"], cfg["c"], *cfg["hw"])).astype(np.float32)
    w = rng.standard_normal((cfg["o"], cfg["c"] // cfg["group"], *cfg["k"])).astype(np.float32)
    b = rng.standard_normal(cfg["o"]).astype(np.float32) if cfg["bias"] else None
    g = Graph("conv")
    xv = g.add_input("x", TensorType(x.shape))
    y = g.op("conv", xv, g.add_const(w, "w"), g.add_const(b, "b") if b is not None else None,
             stride=list(cfg["stride"]), pad=list(cfg["pad"]), dilation=list(cfg["dilation"]), group=cfg["group"])
    g.set_outputs([y])
    want = naive.conv2d(x, w, b, cfg["stride"], cfg["pad"], cfg["dilation"], cfg["group"])
    got = _run(g, x=x)
    assert got.shape == want.shape == y.type.shape
    _close(got, want)


@given(st.data())
def test_pool_equals_naive_loops(data):
    kind = data.draw(st.sampled_from(["max", "avg"]))
    k = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    pad = tuple(data.draw(st.integers(0, k[i % 2] - 1)) for i in range(4))
    h, w = data.draw(st.integers(k[0], 9)), data.draw(st.integers(k[1], 9))
    ceil_mode = data.draw(st.booleans())
    include = data.draw(st.booleans())
    x = np.random.default_rng(data.draw(st.integers(0, 1000))).standard_normal((1, 2, h, w)).astype(np.float32)
    g = Graph("pool")
    y = g.op(f"{kind}_pool", g.add_input("x", TensorType(x.shape)), kernel=list(k), stride=list(s), pad=list(pad),
             ceil_mode=ceil_mode, count_include_pad=include)
    g.set_outputs([y])
    out_hw = (naive.pool_out(h, k[0], s[0], pad[0], pad[2], ceil_mode),
              naive.pool_out(w, k[1], s[1], pad[1], pad[3], ceil_mode))
    assert y.type.shape == (1, 2, *out_hw)
    _close(_run(g, x=x), naive.pool2d(x, kind, k, s, pad, ceil_mode, include, out_hw))


@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.booleans(), st.booleans(), st.booleans(),
       st.floats(-2, 2), st.floats(-2, 2), st.integers(0, 1000))
def test_gemm_equals_naive_loops(m, k, n, ta, tb, has_c, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal((n,)).astype(np.float32) if has_c else None
    g = Graph("gemm")
    y = g.op("gemm", g.add_input("a", TensorType(a.shape)), g.add_const(b, "b"), g.add_const(c, "c") if has_c else None,
             alpha=alpha, beta=beta, trans_a=ta, trans_b=tb)
    g.set_outputs([y])
    _close(_run(g, a=a), naive.gemm(a, b, c, alpha, beta, ta, tb))


@given(st.data())
def test_conv_transpose_equals_naive_loops(data):
    group = data.draw(st.integers(1, 2))
    c, og = group * data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    pad = tuple(data.draw(st.integers(0, 1)) for _ in range(4))
    op = (data.draw(st.integers(0, s[0] - 1)), data.draw(st.integers(0, s[1] - 1)))
    h, w = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, og, *k)).astype(np.float32)
    assume((h - 1) * s[0] - pad[0] - pad[2] + d[0] * (k[0] - 1) + 1 + op[0] > 0)
    assume((w - 1) * s[1] - pad[1] - pad[3] + d[1] * (k[1] - 1) + 1 + op[1] > 0)
    want = naive.conv_transpose2d(x, wt, s, pad, d, group, op)
    g = Graph("deconv")
    y = g.op("conv_transpose", g.add_input("x", TensorType(x.shape)), g.add_const(wt, "w"), stride=list(s),
             pad=list(pad), dilation=list(d), group=group, output_padding=list(op))
    g.set_outputs([y])
    assert y.type.shape == want.shape
    _close(_run(g, x=x), want)
