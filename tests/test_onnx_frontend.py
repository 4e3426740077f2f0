"""The ONNX frontend on hand-built models: opset-dependent forms, patterns it recognises,
constant folding of shape arithmetic, symbolic shapes, quantized models; and bad input, which
must be an LpdcError naming the file and the node."""

from __future__ import annotations

import builtins
from pathlib import Path

import lpdc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.errors import LpdcError, LpdcGraphError, LpdcLimitError, LpdcParseError, LpdcUnsupportedError
from lpdc.frontends.onnx import load_onnx
from onnx import TensorProto, helper, numpy_helper

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "m", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def _vi(name: str, shape, elem: int = F32):
    return helper.make_tensor_value_info(name, elem, shape)


def _init(name: str, arr: np.ndarray):
    return numpy_helper.from_array(np.asarray(arr), name)


def _save(m: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


def _check_vs_ort(m: onnx.ModelProto, path: Path, feed: dict[str, np.ndarray], **load_opts) -> lpdc.ir.Graph:
    """Load with lpdc, run both, compare to 1e-5 x max|output|; return the IR graph."""
    g = load_onnx(_save(m, path), **load_opts)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    got = compile_numpy(g).run(feed)
    for v, ref in zip(g.outputs, want, strict=True):
        assert got[v.name].shape == ref.shape
        np.testing.assert_allclose(got[v.name], ref, atol=1e-5 * max(np.abs(ref).max(), 1e-3), rtol=0)
    return g


RNG = np.random.default_rng(0)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_gemm_becomes_fully_connected_only_in_the_fc_pattern(tmp_path):
    w, c = _x(5, 8), _x(5)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["fc"], transB=1),
             helper.make_node("Gemm", ["x", "wt", "c"], ["fc2"], alpha=0.5),  # transposed constant: still FC
             helper.make_node("Gemm", ["x", "y"], ["gemm"], transB=1)]  # runtime B: a plain gemm
    m = _model(nodes, [_vi("x", [2, 8]), _vi("y", [3, 8])], [_vi("fc", None), _vi("fc2", None), _vi("gemm", None)],
               [_init("w", w), _init("wt", w.T.copy()), _init("c", c)])
    g = _check_vs_ort(m, tmp_path / "gemm.onnx", {"x": _x(2, 8), "y": _x(3, 8)})
    assert [n.op for n in g.nodes if n.op != "const"] == ["fully_connected", "fully_connected", "gemm"]


def test_softmax_before_opset_13_normalises_the_flattened_tail(tmp_path):
    m = _model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [_vi("x", [2, 3, 4, 5])], [_vi("y", None)],
               opset=11)
    g = _check_vs_ort(m, tmp_path / "sm.onnx", {"x": _x(2, 3, 4, 5)})
    assert [n.op for n in g.nodes] == ["flatten", "softmax", "reshape"]
    m13 = _model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [_vi("x", [2, 3, 4, 5])], [_vi("y", None)])
    assert [n.op for n in _check_vs_ort(m13, tmp_path / "sm13.onnx", {"x": _x(2, 3, 4, 5)}).nodes] == ["softmax"]


def _opset_variants(opset: int):
    """Clip, Squeeze, Unsqueeze, Slice and Pad, with parameters as attributes (old) or inputs (new)."""
    if opset < 11:
        nodes = [helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.7),
                 helper.make_node("Unsqueeze", ["c"], ["u"], axes=[0]),
                 helper.make_node("Squeeze", ["u"], ["s"], axes=[0]),
                 helper.make_node("Slice", ["s"], ["sl"], starts=[1, 0], ends=[3, -1], axes=[1, 3]),
                 helper.make_node("Pad", ["sl"], ["y"], pads=[0, 1, 0, 2, 0, 0, 1, 0], mode="reflect")]
        return nodes, []
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
             helper.make_node("Unsqueeze", ["c", "ax0"], ["u"]),
             helper.make_node("Squeeze", ["u", "ax0"], ["s"]),
             helper.make_node("Slice", ["s", "st", "en", "axs"], ["sl"]),
             helper.make_node("Pad", ["sl", "pads"], ["y"], mode="reflect")]
    inits = [_init("lo", np.float32(-0.5)), _init("hi", np.float32(0.7)), _init("ax0", np.array([0])),
             _init("st", np.array([1, 0])), _init("en", np.array([3, -1])), _init("axs", np.array([1, 3])),
             _init("pads", np.array([0, 1, 0, 2, 0, 0, 1, 0]))]
    return nodes, inits


@pytest.mark.parametrize("opset", [9, 13])
def test_attribute_and_input_forms_across_opsets(tmp_path, opset):
    nodes, inits = _opset_variants(opset)
    m = _model(nodes, [_vi("x", [1, 4, 5, 6])], [_vi("y", None)], inits, opset=opset)
    g = _check_vs_ort(m, tmp_path / f"v{opset}.onnx", {"x": _x(1, 4, 5, 6)})
    assert g.outputs[0].type.shape == (1, 3, 6, 7)


def test_shape_arithmetic_folds_at_import(tmp_path):
    """PyTorch's flatten: Shape -> Gather -> Unsqueeze -> Concat -> Reshape becomes one reshape."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Shape", ["r"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch", "ax0"], ["b1"]),
             helper.make_node("Concat", ["b1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["r", "target"], ["flat"]),
             helper.make_node("ReduceMean", ["r"], ["mean"], axes=[2, 3], keepdims=0)]
    inits = [_init("zero", np.array(0)), _init("ax0", np.array([0])), _init("minus1", np.array([-1]))]
    m = _model(nodes, [_vi("x", [2, 3, 4, 4])], [_vi("flat", None), _vi("mean", None)], inits)
    g = _check_vs_ort(m, tmp_path / "flat.onnx", {"x": _x(2, 3, 4, 4)})
    assert sorted(n.op for n in g.nodes if n.op != "const") == ["reduce_mean", "relu", "reshape"]
    assert g.outputs[0].type.shape == (2, 48)


def test_symbolic_dimensions_take_user_shapes_or_batch_one(tmp_path):
    conv = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    w = [_init("w", _x(2, 3, 3, 3))]
    batch_only = _save(_model(conv, [_vi("x", ["N", 3, 8, 8])], [_vi("y", None)], w), tmp_path / "n.onnx")
    assert lpdc.load(batch_only).inputs[0].type.shape == (1, 3, 8, 8)
    assert lpdc.load(batch_only, shapes={"x": [4, 3, 8, 8]}).outputs[0].type.shape == (4, 2, 8, 8)
    spatial = _save(_model(conv, [_vi("x", ["N", 3, "H", "W"])], [_vi("y", None)], w), tmp_path / "hw.onnx")
    with pytest.raises(LpdcParseError, match=r"input 'x'.*dimension 2 \(H\) is symbolic"):
        lpdc.load(spatial)
    assert lpdc.load(spatial, shapes={"x": [1, 3, 16, 12]}).outputs[0].type.shape == (1, 2, 16, 12)
    with pytest.raises(LpdcParseError, match="does not fit the declared"):
        lpdc.load(spatial, shapes={"x": [1, 4, 16, 12]})
    with pytest.raises(LpdcParseError, match="unknown input 'data'"):
        lpdc.load(spatial, shapes={"data": [1, 3, 8, 8]})


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(tmp_path, mode):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2], auto_pad=mode),
             helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2], auto_pad=mode)]
    m = _model(nodes, [_vi("x", [1, 2, 9, 8])], [_vi("y", None)], [_init("w", _x(3, 2, 4, 3))])
    _check_vs_ort(m, tmp_path / "ap.onnx", {"x": _x(1, 2, 9, 8)})


def _qdq_model() -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 per-channel weights), bias) -> Relu -> Q -> DQ: the usual QDQ form."""
    w = RNG.integers(-127, 127, (4, 3, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    inits = [_init("xs", np.float32(0.02)), _init("xz", np.uint8(128)), _init("w", w),
             _init("ws", np.array([0.01, 0.02, 0.005, 0.01], np.float32)), _init("wz", np.zeros(4, np.int8)),
             _init("b", _x(4)), _init("ys", np.float32(0.05)), _init("yz", np.uint8(0))]
    return _model(nodes, [_vi("x", [1, 3, 6, 6])], [_vi("y", None)], inits)


def test_qdq_model_keeps_quantized_types(tmp_path):
    m = _qdq_model()
    path = _save(m, tmp_path / "qdq.onnx")
    g = load_onnx(path)
    ops = [n.op for n in g.nodes]
    assert ops.count("quantize") == 2 and ops.count("dequantize") == 3
    w = next(n.inputs[0] for n in g.nodes if n.op == "dequantize" and n.inputs[0].producer.op == "const")
    assert w.type.dtype == "i8" and w.type.quant.axis == 0 and w.type.quant.scale[2] == pytest.approx(0.005)
    x = _x(1, 3, 6, 6)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = compile_numpy(g).run({"x": x})[g.outputs[0].name]
    assert np.abs(got - want).max() <= 0.05 + 1e-6  # at most one output quantum (rounding at ties)
    assert np.mean(got == want) > 0.95


def test_qlinearconv_and_convinteger_match_onnx_runtime(tmp_path):
    w = RNG.integers(0, 255, (2, 3, 3, 3)).astype(np.uint8)
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["q"],
                              pads=[1, 1, 1, 1]),
             helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["i"], strides=[2, 2])]
    inits = [_init("xs", np.float32(0.03)), _init("xz", np.uint8(120)), _init("w", w),
             _init("ws", np.float32(0.004)), _init("wz", np.uint8(130)), _init("ys", np.float32(0.2)),
             _init("yz", np.uint8(100)), _init("b", np.array([100, -200], np.int32))]
    m = _model(nodes, [_vi("x", [1, 3, 7, 7], TensorProto.UINT8)],
               [_vi("q", None, TensorProto.UINT8), _vi("i", None, TensorProto.INT32)], inits, opset=13)
    g = load_onnx(_save(m, tmp_path / "ql.onnx"))
    assert g.inputs[0].type.quant is not None  # typed from its consumers' constant parameters
    x = RNG.integers(0, 255, (1, 3, 7, 7)).astype(np.uint8)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = compile_numpy(g).run({"x": x})
    assert np.abs(got["q"].astype(int) - want[0]).max() <= 1
    np.testing.assert_array_equal(got["i"], want[1])


# ---- bad input ------------------------------------------------------------------------------

def _relu_model() -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"], name="act")], [_vi("x", [1, 4])], [_vi("y", None)])


def test_truncated_empty_and_non_onnx_files(tmp_path):
    good = _relu_model().SerializeToString()
    cases = {"trunc.onnx": good[: len(good) // 2], "empty.onnx": b"", "text.onnx": b"name: 'not a model'\n" * 20,
             "junk.onnx": bytes(range(256)) * 8}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(LpdcParseError) as e:
            lpdc.load(tmp_path / name)
        assert name in str(e.value)


def test_unknown_op_is_named_with_near_matches(tmp_path):
    m = _model([helper.make_node("Reluu", ["x"], ["y"], name="act7")], [_vi("x", [1, 4])], [_vi("y", None)])
    with pytest.raises(LpdcUnsupportedError) as e:
        load_onnx(_save(m, tmp_path / "u.onnx"))
    msg = str(e.value)
    assert "u.onnx" in msg and "'act7'" in msg and "'Reluu'" in msg and "Relu" in msg.split("near matches")[1]


def test_wrong_initializer_size(tmp_path):
    t = _init("w", _x(4, 4))
    t.raw_data = t.raw_data[:-4]
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, 4])], [_vi("y", None)], [t])
    with pytest.raises(LpdcParseError, match=r"bad.onnx: tensor 'w' of shape \[4, 4\].*64 bytes.*has 60"):
        load_onnx(_save(m, tmp_path / "bad.onnx"))


def _external_model(location: str) -> onnx.ModelProto:
    t = onnx.TensorProto(name="w", data_type=F32, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", location), ("offset", "0"), ("length", "64")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, 4])], [_vi("y", None)], [t])


def test_external_data_outside_the_model_directory_is_refused_unread(tmp_path, monkeypatch):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "w.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    ok = load_onnx(_save(_external_model("w.bin"), model_dir / "ok.onnx"))
    np.testing.assert_array_equal(ok.params["w"].ravel(), np.arange(16))
    opened: list[str] = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    for location in ("../secret.bin", str(tmp_path / "secret.bin"), "sub/../../secret.bin"):
        path = _save(_external_model(location), model_dir / "evil.onnx")
        with pytest.raises(LpdcParseError, match="evil.onnx: tensor 'w'.*(escapes|relative path)"):
            load_onnx(path)
    assert not any("secret" in f for f in opened)


def test_element_limit_is_checked_before_allocating(tmp_path):
    huge = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1 << 20, 1 << 20])], [_vi("y", None)])
    with pytest.raises(LpdcLimitError, match="huge.onnx: input 'x'.*1099511627776 elements"):
        load_onnx(_save(huge, tmp_path / "huge.onnx"))
    big_init = onnx.TensorProto(name="w", data_type=F32, dims=[1 << 16, 1 << 16])  # claims 16 GiB, holds nothing
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, 1 << 16])], [_vi("y", None)], [big_init])
    with pytest.raises(LpdcLimitError, match="tensor 'w'"):
        load_onnx(_save(m, tmp_path / "init.onnx"), max_elements=1 << 24)
    grow = _model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="up")], [_vi("x", [1, 1, 64, 64])],
                  [_vi("y", None)], [_init("s", np.array([1, 1, 512, 512], np.float32))])
    with pytest.raises(LpdcLimitError, match="node 'up'.*over the limit of 1000000"):
        load_onnx(_save(grow, tmp_path / "grow.onnx"), max_elements=10**6)


def test_cycles_and_undefined_values_name_the_nodes(tmp_path):
    cyc = _model([helper.make_node("Add", ["x", "b"], ["a"], name="first"),
                  helper.make_node("Relu", ["a"], ["b"], name="second")], [_vi("x", [1, 4])], [_vi("b", None)])
    with pytest.raises(LpdcGraphError, match="cyc.onnx.*cycle.*'first'.*'second'|cyc.onnx.*cycle.*'second'.*'first'"):
        load_onnx(_save(cyc, tmp_path / "cyc.onnx"))
    dangling = _model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="add1")], [_vi("x", [1, 4])],
                      [_vi("y", None)])
    with pytest.raises(LpdcGraphError, match="node 'add1'.*'nowhere' is not produced"):
        load_onnx(_save(dangling, tmp_path / "d.onnx"))


def test_bad_attributes_and_opsets_are_lpdc_errors(tmp_path):
    old = _relu_model()
    old.opset_import[0].version = 5
    with pytest.raises(LpdcUnsupportedError, match="opset 5 is not supported"):
        load_onnx(_save(old, tmp_path / "old.onnx"))
    shape_mismatch = _model([helper.make_node("Add", ["x", "w"], ["y"], name="add2")], [_vi("x", [1, 4])],
                            [_vi("y", None)], [_init("w", _x(3))])
    with pytest.raises(LpdcError, match="s.onnx: node 'add2' \\(Add\\).*do not broadcast"):
        load_onnx(_save(shape_mismatch, tmp_path / "s.onnx"))
    dyn = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], [_vi("x", [1, 4]), _vi("s", [2],
                 TensorProto.INT64)], [_vi("y", None)])
    with pytest.raises(LpdcUnsupportedError, match="node 'rs'.*must be a constant"):
        load_onnx(_save(dyn, tmp_path / "dyn.onnx"))
