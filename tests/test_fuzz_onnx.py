"""Fuzzing the ONNX loader: mutated real models (zoo models exported to ONNX), random bytes,
huge/negative/zero dimensions, wrong dtypes and NaN/inf weights. Every input ends in a graph or an
LpdcError with a message, within a per-input time bound."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzz_util import loads_or_lpdc_error, measured
from hypothesis import given, settings
from hypothesis import strategies as st
from lpdc.errors import LpdcLimitError, LpdcParseError, LpdcUnsupportedError
from lpdc.frontends.onnx import load_onnx
from lpdc.frontends.onnx_export import export_onnx
from lpdc.ir.limits import override
from lpdc.tools.zoo import build
from onnx import TensorProto, helper

BASE = {name: export_onnx(build(name), None).SerializeToString() for name in ("tiny_cnn", "lenet")}
INTERESTING = [0, 1, -1, -7, 3, 1000, 2**31, 2**40, 2**62]


def _load_bytes(tmp: Path, data: bytes) -> str:
    p = tmp / "m.onnx"
    p.write_bytes(data)
    return loads_or_lpdc_error(lambda: load_onnx(p))


@settings(max_examples=120)
@given(name=st.sampled_from(sorted(BASE)), edits=st.lists(
    st.tuples(st.sampled_from(["flip", "delete", "insert"]), st.integers(0, 10**9), st.binary(min_size=1, max_size=8)),
    min_size=1, max_size=5))
def test_byte_mutated_models_load_or_raise(tmp_path_factory, name, edits):
    data = bytearray(BASE[name])
    for kind, pos, piece in edits:
        i = pos % len(data)
        if kind == "flip":
            data[i] ^= piece[0] or 1
        elif kind == "delete":
            del data[i:i + len(piece) * 7]
        else:
            data[i:i] = piece
    _load_bytes(tmp_path_factory.mktemp("b"), bytes(data))


def _mutate(m: onnx.ModelProto, kind: str, pick: int, value: int) -> None:
    """One structural edit of a parsed model (see the strategies below)."""
    g = m.graph
    node = g.node[pick % len(g.node)]
    init = g.initializer[pick % len(g.initializer)]
    if kind == "init_dim" and init.dims:
        init.dims[pick % len(init.dims)] = value
    elif kind == "init_dtype":
        init.data_type = abs(value) % 20
    elif kind == "input_dim":
        dims = g.input[0].type.tensor_type.shape.dim
        dims[pick % len(dims)].dim_value = value
    elif kind == "attr" and node.attribute:
        a = node.attribute[pick % len(node.attribute)]
        if a.ints:
            a.ints[pick % len(a.ints)] = value
        elif a.type == onnx.AttributeProto.INT:
            a.i = value
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = float(value) if abs(value) < 2**31 else math.nan
    elif kind == "op_type":
        node.op_type = ["Conv", "Relu", "Add", "Concat", "Reshape", "Gemm", "MaxPool", "Softmax", "Flatten",
                        "BatchNormalization", "Pad", "Slice", "Resize", "Nope"][pick % 14]
    elif kind == "drop_input" and node.input:
        del node.input[pick % len(node.input)]
    elif kind == "rewire" and node.input:
        node.input[pick % len(node.input)] = g.initializer[value % len(g.initializer)].name
    elif kind == "drop_node":
        del g.node[pick % len(g.node)]


@settings(max_examples=200)
@given(name=st.sampled_from(sorted(BASE)), edits=st.lists(st.tuples(
    st.sampled_from(["init_dim", "init_dtype", "input_dim", "attr", "op_type", "drop_input", "rewire", "drop_node"]),
    st.integers(0, 1000), st.sampled_from(INTERESTING)), min_size=1, max_size=3))
def test_structurally_mutated_models_load_or_raise(tmp_path_factory, name, edits):
    m = onnx.ModelProto()
    m.ParseFromString(BASE[name])
    for kind, pick, value in edits:
        _mutate(m, kind, pick, value)
    _load_bytes(tmp_path_factory.mktemp("s"), m.SerializeToString())


@settings(max_examples=100)
@given(st.binary(max_size=400))
def test_random_bytes_raise_lpdc_error(tmp_path_factory, data):
    assert _load_bytes(tmp_path_factory.mktemp("r"), data) != "ok"  # random bytes are never a model


def _model(initializers=(), inputs=None, nodes=None, outputs=None) -> onnx.ModelProto:
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])]
    nodes = nodes if nodes is not None else [helper.make_node("Relu", ["x"], ["y"])]
    outputs = outputs if outputs is not None else [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save(m: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


def test_2_pow_40_element_tensor_refused_fast_in_bounded_memory(tmp_path):
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**20, 2**20])  # declared, no data
    m = _model([huge], nodes=[helper.make_node("Add", ["x", "w"], ["y"])])
    err, seconds, peak = measured(lambda: load_onnx(_save(m, tmp_path / "huge.onnx")))
    assert isinstance(err, LpdcLimitError) and "1099511627776 elements" in str(err), err
    assert "huge.onnx" in str(err) and "tensor 'w'" in str(err)
    assert seconds < 5 and peak < 200 * 2**20, (seconds, peak)
    inp = _model(inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**20, 2**20])])
    err, seconds, peak = measured(lambda: load_onnx(_save(inp, tmp_path / "huge_in.onnx")))
    assert isinstance(err, LpdcLimitError) and "input 'x'" in str(err)
    assert seconds < 5 and peak < 200 * 2**20


@pytest.mark.parametrize("dims, cls, match", [
    ([-3, 4], LpdcParseError, "negative dimension"),
    ([2**62, 2**62], LpdcLimitError, "over the limit"),
])
def test_bad_initializer_dims(tmp_path, dims, cls, match):
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    m = _model([t], nodes=[helper.make_node("Add", ["x", "w"], ["y"])])
    with pytest.raises(cls, match=match):
        load_onnx(_save(m, tmp_path / "d.onnx"))


def test_zero_size_initializer_broadcasts_like_onnx(tmp_path):
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[0, 4])  # valid ONNX: [1,4] + [0,4] -> [0,4]
    m = _model([t], nodes=[helper.make_node("Add", ["x", "w"], ["y"])])
    g = load_onnx(_save(m, tmp_path / "z.onnx"))
    assert g.outputs[0].type.shape == (0, 4)


def test_wrong_dtypes_are_refused_by_name(tmp_path):
    t = helper.make_tensor("w", TensorProto.STRING, [1], vals=[b"a"])
    m = _model([t], nodes=[helper.make_node("Add", ["x", "w"], ["y"])])
    with pytest.raises(LpdcUnsupportedError, match="element type STRING"):
        load_onnx(_save(m, tmp_path / "s.onnx"))
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], float_data=[1.0, 2.0])  # 2 of 4 values
    m = _model([t], nodes=[helper.make_node("Add", ["x", "w"], ["y"])])
    with pytest.raises(LpdcParseError, match="needs 4 values, has 2"):
        load_onnx(_save(m, tmp_path / "short.onnx"))


def test_nan_and_inf_weights_load_with_a_warning(tmp_path):
    # Policy (frontends/finite.py): accepted, one RuntimeWarning naming the tensors.
    w = np.array([[1.0, np.nan, np.inf, 2.0]], np.float32)
    m = _model([helper.make_tensor("w", TensorProto.FLOAT, [1, 4], w.ravel().tolist())],
               nodes=[helper.make_node("Add", ["x", "w"], ["y"])])
    with pytest.warns(RuntimeWarning, match=r"1 weight tensor\(s\) hold NaN or infinite values.*'w' \(2\)"):
        g = load_onnx(_save(m, tmp_path / "nan.onnx"))
    from lpdc.backends.numpy import compile_numpy

    y = compile_numpy(g).run({"x": np.ones((1, 4), np.float32)})["y"]
    np.testing.assert_array_equal(y, [[2.0, np.nan, np.inf, 3.0]])


def test_node_and_weight_byte_limits_refuse_before_converting(tmp_path):
    path = tmp_path / "lenet.onnx"
    path.write_bytes(BASE["lenet"])
    n = len(onnx.load(path).graph.node)
    with override(max_nodes=n - 1), pytest.raises(LpdcLimitError, match="nodes, over the limit"):
        load_onnx(path)
    with override(max_weight_bytes=10_000), pytest.raises(LpdcLimitError, match="bytes of weights, over the limit"):
        load_onnx(path)
    with override(max_elements=1000), pytest.raises(LpdcLimitError, match="over the limit of 1000"):
        load_onnx(path)
    assert len(load_onnx(path).nodes) > 5  # default limits: loads
