"""The primitive catalog: every conv primitive equals the reference convolution on
hypothesis-generated shapes (strides, asymmetric padding, dilation, groups where it applies), in
its own layout; fully-connected primitives equal x @ w.T; the kernels dispatch on the `primitive`
attribute and keep the epilogue; applicability and errors.

Tolerances (max abs error over max |reference|, float32 inputs, float64 reference):
  GEMM-family, direct, depthwise, grouped, sparse: 1e-5 (plus 1e-6 absolute)
  Winograd F(2x2,3x3): 1e-4; Winograd F(4x4,3x3): 1e-3 (its transforms have entries up to 8 and
  1/24, so rounding grows about 10x; observed ~3e-6 here); FFT: 1e-4 (observed ~2e-7).
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.im2col import conv2d_im2col
from lpdc.backends.numpy.layout import from_nchw, to_nchw
from lpdc.backends.numpy.primitives import PRIMITIVES, ConvSpec, FCSpec, get_primitive, primitives_for
from lpdc.backends.numpy.primitives.base import packed
from lpdc.errors import LpdcExecutionError, LpdcUnsupportedError
from lpdc.ir import Graph, TensorType

TOLERANCE = {"winograd_2x2": 1e-4, "winograd_4x4": 1e-3, "fft": 1e-4}
CONV_PRIMITIVES = [p.name for p in primitives_for("conv")]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def conv_case(draw, name: str):
    """(spec, x, w) for primitive `name`, drawn inside the shapes it applies to."""
    fixed3 = name.startswith("winograd")
    k = (3, 3) if fixed3 else (1, 1) if name.startswith("gemm1x1") else (
        draw(st.integers(3, 5)), draw(st.integers(3, 5))) if name == "fft" else (
        draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    unit = fixed3
    stride = (1, 1) if unit else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if unit or name.startswith("gemm1x1") else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (0, 0, 0, 0) if name.startswith("gemm1x1") else tuple(draw(st.integers(0, 2)) for _ in range(4))
    block = 8 if name == "im2row_8c" else 1
    c = block * draw(st.integers(1, 3 if block > 1 else 6))
    if name in ("depthwise", "depthwise_nhwc"):
        group, o = c, c * draw(st.integers(1, 2))
    elif name == "grouped":
        group = draw(st.integers(2, 3))
        c, o = group * draw(st.integers(1, 3)), group * draw(st.integers(1, 3))
    elif name in ("im2col", "im2row", "direct"):
        group = draw(st.sampled_from(_divisors(c)))
        o = group * draw(st.integers(1, 3))
    else:
        group, o = 1, block * draw(st.integers(1, 3 if block > 1 else 6))
    span_h, span_w = dilation[0] * (k[0] - 1) + 1, dilation[1] * (k[1] - 1) + 1
    h = draw(st.integers(max(1, span_h - pad[0] - pad[2]), span_h + 6))
    w = draw(st.integers(max(1, span_w - pad[1] - pad[3]), span_w + 6))
    n = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c // group, *k)).astype(np.float32)
    density = 1.0
    if name in ("sparse_csr", "sparse_direct"):
        flat = wt.reshape(-1)  # a pruned layer: at least 60% zeros
        flat[rng.permutation(flat.size)[:int(np.ceil(0.6 * flat.size))]] = 0
        density = float(np.count_nonzero(wt)) / wt.size
    spec = ConvSpec(n, c, h, w, o, k[0], k[1], stride, pad, dilation, group, "float32", density)
    return spec, x, wt


def _check_conv(name: str, spec: ConvSpec, x: np.ndarray, w: np.ndarray) -> None:
    prim = get_primitive(name, "conv")
    assert prim.applies(spec), f"{name} should apply to {spec}"
    ref = conv2d_im2col(x.astype(np.float64), w.astype(np.float64), spec.stride, spec.pad, spec.dilation, spec.group)
    y = prim.run(from_nchw(x, prim.in_layout), w, spec)
    assert y.dtype == np.float32
    got = to_nchw(y, prim.out_layout, spec.o)
    assert got.shape == ref.shape
    bound = TOLERANCE.get(name, 1e-5) * float(np.abs(ref).max()) + 1e-6
    assert float(np.abs(got - ref).max()) <= bound


@pytest.mark.parametrize("name", CONV_PRIMITIVES)
@settings(max_examples=25)
@given(data=st.data())
def test_conv_primitive_equals_reference(name: str, data) -> None:
    spec, x, w = data.draw(conv_case(name))
    _check_conv(name, spec, x, w)


@settings(max_examples=15)
@given(case=conv_case("im2col"))
def test_reference_im2col_equals_naive_loops(case) -> None:
    spec, x, w = case
    ref = naive.conv2d(x, w, None, spec.stride, spec.pad, spec.dilation, spec.group)
    got = conv2d_im2col(x, w, spec.stride, spec.pad, spec.dilation, spec.group)
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


def test_catalog_covers_the_required_primitives() -> None:
    need = {"direct", "im2col", "im2row", "kn2row", "kn2col", "gemm1x1", "winograd_2x2", "winograd_4x4", "fft",
            "depthwise", "grouped", "sparse_csr", "gemv", "gemm", "spmv"}
    assert need <= set(PRIMITIVES)
    layouts = {p.in_layout for p in PRIMITIVES.values() if p.op == "conv"}
    assert layouts == {"NCHW", "NHWC", "NCHW8c"}
    for p in PRIMITIVES.values():  # every entry declares layouts and a workspace
        assert p.in_layout == p.out_layout and p.workspace(ConvSpec(1, 8, 8, 8, 8, 3, 3) if p.op == "conv"
                                                         else FCSpec(1, 8, 8)) >= 0


@pytest.mark.parametrize("name, spec, applies", [
    ("winograd_4x4", ConvSpec(1, 4, 8, 8, 4, 3, 3, stride=(2, 2)), False),
    ("winograd_2x2", ConvSpec(1, 4, 8, 8, 4, 3, 3, dilation=(2, 1)), False),
    ("winograd_2x2", ConvSpec(1, 4, 8, 8, 4, 5, 5), False),
    ("gemm1x1", ConvSpec(1, 4, 8, 8, 4, 1, 1, pad=(1, 1, 1, 1)), False),
    ("kn2row", ConvSpec(1, 4, 8, 8, 4, 3, 3, group=2), False),
    ("depthwise", ConvSpec(1, 4, 8, 8, 8, 3, 3, group=2), False),
    ("im2row_8c", ConvSpec(1, 12, 8, 8, 16, 3, 3), False),
    ("sparse_csr", ConvSpec(1, 4, 8, 8, 4, 3, 3, density=0.9), False),
    ("fft", ConvSpec(1, 4, 8, 8, 4, 1, 1), False),
    ("im2col", ConvSpec(1, 4, 8, 8, 4, 3, 3, dtype="int32"), False),
    ("depthwise", ConvSpec(1, 4, 8, 8, 8, 3, 3, group=4), True),
])
def test_applicability(name: str, spec: ConvSpec, applies: bool) -> None:
    assert get_primitive(name).applies(spec) is applies


@pytest.mark.parametrize("batch, density", [(1, 1.0), (3, 1.0), (1, 0.2), (2, 0.3)])
def test_fc_primitives_equal_matmul(batch: int, density: float) -> None:
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 37)).astype(np.float32)
    w = rng.standard_normal((11, 37)).astype(np.float32)
    w[rng.random(w.shape) > density] = 0
    spec = FCSpec(batch, 37, 11, "float32", float(np.count_nonzero(w)) / w.size)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    ran = 0
    for prim in primitives_for("fully_connected"):
        if prim.applies(spec):
            np.testing.assert_allclose(prim.run(x, w, spec), ref, atol=1e-5 * float(np.abs(ref).max()))
            ran += 1
    assert ran == 1 + (batch == 1) + 3 * (density <= 0.5)  # spmv, spmv_csc, spmv_coo (bsr needs 4x4 tiles)


def _conv_graph(layout: str, primitive: str, c: int = 8, o: int = 16, act: str = "relu") -> Graph:
    """x -> [convert] -> conv(+bias +residual, act) -> [convert back]: the epilogue in `layout`."""
    rng = np.random.default_rng(1)
    g = Graph("t")
    x = g.add_input("x", TensorType((2, c, 9, 7)))
    r = g.add_input("r", TensorType((2, o, 9, 7)))
    w = g.add_const(rng.standard_normal((o, c, 3, 3)).astype(np.float32), "w")
    b = g.add_const(rng.standard_normal(o).astype(np.float32), "b")
    if layout != "NCHW":
        x = g.op("layout_convert", x, src="NCHW", dst=layout, channels=c)
        r = g.op("layout_convert", r, src="NCHW", dst=layout, channels=o)
    y = g.op("conv", x, w, b, r, pad=[1, 1, 1, 1], activation=act, act_alpha=0.1, primitive=primitive)
    if layout != "NCHW":
        y = g.op("layout_convert", y, src=layout, dst="NCHW", channels=o)
    g.set_outputs([y])
    return g


@pytest.mark.parametrize("layout, primitive", [("NCHW", "winograd_4x4"), ("NHWC", "im2row"),
                                                ("NHWC", "kn2col"), ("NCHW8c", "im2row_8c"), ("NCHW", "direct")])
def test_kernel_dispatches_with_epilogue(layout: str, primitive: str) -> None:
    rng = np.random.default_rng(2)
    feed = {"x": rng.standard_normal((2, 8, 9, 7)).astype(np.float32),
            "r": rng.standard_normal((2, 16, 9, 7)).astype(np.float32)}
    want = compile_numpy(_conv_graph("NCHW", "", act="leaky_relu")).run(feed)
    got = compile_numpy(_conv_graph(layout, primitive, act="leaky_relu")).run(feed)
    (ref,), (out,) = want.values(), got.values()
    assert out.shape == ref.shape == (2, 16, 9, 7)
    np.testing.assert_allclose(out, ref, atol=1e-3 * float(np.abs(ref).max()))


def test_kernel_rejects_a_primitive_that_does_not_fit() -> None:
    feed = {"x": np.zeros((2, 8, 9, 7), np.float32), "r": np.zeros((2, 16, 9, 7), np.float32)}
    with pytest.raises(LpdcExecutionError, match="takes NHWC input"):
        compile_numpy(_conv_graph("NCHW", "im2row")).run(feed)
    with pytest.raises(LpdcExecutionError, match="does not apply"):
        compile_numpy(_conv_graph("NCHW", "gemm1x1")).run(feed)
    with pytest.raises(LpdcUnsupportedError, match="unknown conv primitive 'nope'"):
        compile_numpy(_conv_graph("NCHW", "nope")).run(feed)


def test_packed_weights_follow_the_array_not_its_id() -> None:
    w1 = np.ones((4, 4), np.float32)
    first = packed(w1, "t", lambda: w1 * 2)
    assert packed(w1, "t", lambda: w1 * 3) is first  # cached
    w2 = np.full((4, 4), 5, np.float32)
    assert float(packed(w2, "t", lambda: w2 * 2)[0, 0]) == 10.0
