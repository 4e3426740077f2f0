"""IR -> ONNX export: every exportable op against ONNX Runtime, graphs after optimisation passes
(fused epilogues unfold into separate ONNX nodes), NHWC and blocked layouts, quantized graphs
as QDQ, and atomic file writes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.errors import LpdcUnsupportedError
from lpdc.frontends.onnx import convert_model, load_onnx
from lpdc.frontends.onnx_export import export_onnx
from lpdc.ir import Graph, QuantParams, TensorType
from lpdc.tools.zoo import build
from op_samples import SAMPLES


def _ort_run(model, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def _feed(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


def _assert_same(g: Graph, model, atol: float = 1e-6, quantum: float = 0.0) -> None:
    """ONNX Runtime on `model` computes what the NumPy backend computes on `g` (same dtypes too), to
    `atol` x max|output|, or one quantization step `quantum` (float32 vs float64 rounding at ties)."""
    feed = _feed(g)
    want = compile_numpy(g).run(feed)
    got = _ort_run(model, feed)
    for v, out in zip(g.outputs, got, strict=True):
        ref = want[v.name]
        assert out.dtype == ref.dtype and out.shape == ref.shape, v.name
        scale = max(float(np.abs(ref.astype(np.float64)).max()), 1.0)
        np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64), atol=atol * scale + quantum,
                                   rtol=1e-4, err_msg=f"output %{v.name}")


_SAMPLE_FNS = {fn.__name__: fn for op, fn in SAMPLES.items() if op not in ("prior_box", "detection_output")}


@pytest.mark.parametrize("sample", sorted(_SAMPLE_FNS))
def test_every_exportable_op_matches_onnx_runtime(sample):
    rng = np.random.default_rng(0)
    g = Graph(sample.strip("_"))
    x = g.add_input("x", TensorType((1, 4, 4, 4)))
    g.set_outputs(_SAMPLE_FNS[sample](g, x, rng))
    g.verify()
    model = export_onnx(g)
    _assert_same(g, model, atol=1e-5, quantum=0.2 + 1e-6 if sample == "_quant" else 0.0)
    back = convert_model(model)  # and the exported model reads back into an equal graph
    feed = _feed(g)
    got, want = compile_numpy(back).run(feed), compile_numpy(g).run(feed)
    for v, w in zip(g.outputs, back.outputs, strict=True):
        np.testing.assert_allclose(got[w.name], want[v.name], rtol=1e-5,
                                   atol=0.2 + 1e-6 if sample == "_quant" else 1e-6)


@pytest.mark.parametrize("name", ["tiny_cnn", "mobilenet_v2", "sphereface20"])
def test_export_after_passes_unfolds_fused_epilogues(name):
    import lpdc

    g = build(name)
    opt = lpdc.compile(g, opt_level=2).graph
    assert not any(n.op == "batch_norm" for n in opt.nodes), "the passes should have folded BatchNorm"
    fused = [n for n in opt.nodes if n.attrs.get("activation", "none") != "none"]
    assert fused, "the passes should have fused activations into convolutions"
    model = export_onnx(opt)
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and ops & {"Relu", "Clip", "PRelu"}
    feed = _feed(g)
    want = compile_numpy(g).run(feed)
    got = _ort_run(model, feed)
    for v, out in zip(g.outputs, got, strict=True):
        ref = want[v.name]
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_nhwc_and_blocked_layouts_export_with_transposes():
    rng = np.random.default_rng(0)
    g = Graph("layouts")
    x = g.add_input("x", TensorType((1, 5, 6, 6)))
    h = g.op("layout_convert", x, src="NCHW", dst="NHWC")
    w = g.add_const(rng.standard_normal((3, 5, 3, 3)).astype(np.float32), "w")
    r = g.add_const(rng.standard_normal((1, 6, 6, 3)).astype(np.float32), "r")
    y = g.op("conv", h, w, None, r, pad=[1, 1, 1, 1], activation="relu")  # NHWC in, NHWC out, residual NHWC
    y = g.op("max_pool", y, kernel=[2, 2], stride=[2, 2])
    blocked = g.op("layout_convert", y, src="NHWC", dst="NCHW8c")  # 3 channels padded to a block of 8
    back = g.op("layout_convert", blocked, src="NCHW8c", dst="NCHW", channels=3)
    g.set_outputs([back, blocked])
    g.verify()
    assert y.type.layout == "NHWC" and blocked.type.shape == (1, 1, 3, 3, 8)
    _assert_same(g, export_onnx(g))


def _quantized_conv_graph() -> Graph:
    """float -> u8 -> integer conv (i8 per-channel weights, i32 bias) -> requantize -> float."""
    rng = np.random.default_rng(3)
    g = Graph("qconv")
    x = g.add_input("x", TensorType((1, 3, 8, 8)))
    sx, sw = 0.02, [0.01, 0.02, 0.015, 0.03]
    q = g.op("quantize", x, dtype="u8", scale=[sx], zero_point=[128])
    w = g.add_const(rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8), "w", "i8",
                    quant=QuantParams(tuple(sw), (0, 0, 0, 0), 0))
    b = g.add_const(rng.integers(-500, 500, (4,)).astype(np.int32), "b", "i32")
    acc_t = TensorType((1, 4, 8, 8), "i32", None, QuantParams(tuple(sx * s for s in sw), (0,) * 4, 1))
    acc = g.add_node("conv", [q, w, b], {"pad": [1, 1, 1, 1], "activation": "relu"}, types=[acc_t]).output
    y = g.op("requantize", acc, dtype="i8", scale=[0.05], zero_point=[-3])
    fx = g.op("dequantize", g.op("quantize", x, dtype="fx16_8"))
    i16 = g.op("dequantize", g.op("quantize", x, dtype="i16", scale=[0.001, 0.002, 0.004], zero_point=[5, 0, -5],
                                  axis=1))
    g.set_outputs([g.op("dequantize", y), fx, i16, acc])
    g.verify()
    return g


def test_quantized_graph_exports_as_qdq():
    g = _quantized_conv_graph()
    model = export_onnx(g)
    ops = [n.op_type for n in model.graph.node]
    assert {"QuantizeLinear", "DequantizeLinear", "ConvInteger"} <= set(ops)
    feed = _feed(g)
    want = compile_numpy(g).run(feed)
    got = _ort_run(model, feed)
    # Rounding at exact ties may differ by one step: judge by at most one quantum.
    np.testing.assert_allclose(got[0], want[g.outputs[0].name], atol=0.05 + 1e-6)
    np.testing.assert_allclose(got[1], want[g.outputs[1].name], atol=2.0**-8 + 1e-6)
    np.testing.assert_allclose(got[2], want[g.outputs[2].name], atol=0.004 + 1e-6)
    np.testing.assert_array_equal(got[3], want[g.outputs[3].name])  # the int32 accumulator is exact


def test_qdq_round_trip_keeps_the_quantization():
    g = _quantized_conv_graph()
    back = convert_model(export_onnx(g))
    assert any(n.op == "quantize" for n in back.nodes) and any(n.op == "dequantize" for n in back.nodes)
    assert any(n.op == "conv" and n.inputs[0].type.dtype == "u8" for n in back.nodes)
    feed = _feed(g)
    want, got = compile_numpy(g).run(feed), compile_numpy(back).run(feed)
    np.testing.assert_array_equal(got[back.outputs[3].name], want[g.outputs[3].name])


def test_export_writes_atomically_and_refuses_unexportable_ops(tmp_path):
    g = build("lenet")
    path = tmp_path / "sub" / "lenet.onnx"
    model = export_onnx(g, path)
    assert path.read_bytes() == model.SerializeToString()
    assert [p.name for p in path.parent.iterdir()] == ["lenet.onnx"]  # no temporary file left behind
    ext = tmp_path / "ext.onnx"
    export_onnx(g, ext, external_data=True)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 430_000 * 4  # the weights; small biases stay inline
    x = _feed(g)
    np.testing.assert_allclose(compile_numpy(load_onnx(ext)).run(x)["prob"], compile_numpy(g).run(x)["prob"])

    bad = Graph("ssd")
    f = bad.add_input("f", TensorType((1, 4, 4, 4)))
    img = bad.add_input("img", TensorType((1, 3, 32, 32)))
    bad.set_outputs([bad.op("prior_box", f, img, min_sizes=[8.0])])
    target = tmp_path / "ssd.onnx"
    with pytest.raises(LpdcUnsupportedError, match="prior_box"):
        export_onnx(bad, target)
    assert not target.exists() and list(tmp_path.glob(".ssd*")) == []
