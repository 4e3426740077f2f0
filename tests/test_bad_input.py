"""Bad graphs and bad inputs end in an LpdcError that names the node, never a raw NumPy error."""

from __future__ import annotations

import lpdc
import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.errors import (
    LpdcError,
    LpdcExecutionError,
    LpdcGraphError,
    LpdcTargetError,
    LpdcTypeError,
    LpdcUnsupportedError,
)
from lpdc.ir import Graph, Node, TensorType


def _conv_graph() -> Graph:
    g = Graph("g")
    x = g.add_input("x", TensorType((1, 3, 8, 8)))
    w = g.add_const(np.ones((4, 3, 3, 3), np.float32), "w")
    y = g.op("conv", x, w, name="conv1")
    g.set_outputs([g.op("relu", y, name="relu1")])
    return g


def test_type_mismatch_when_building_names_the_node():
    g = Graph("g")
    x = g.add_input("x", TensorType((1, 3, 8, 8)))
    w = g.add_const(np.ones((4, 5, 3, 3), np.float32), "w")
    with pytest.raises(LpdcTypeError, match=r"node 'conv1' \(conv\).*expects 5 input channels, input has 3"):
        g.op("conv", x, w, name="conv1")


def test_type_mismatch_found_by_verify_names_the_node():
    g = _conv_graph()
    g.value("relu1").type = TensorType((1, 4, 7, 7))
    with pytest.raises(LpdcTypeError, match=r"node 'relu1' \(relu\): type mismatch on %relu1"):
        g.verify()


def test_dangling_value_names_the_node():
    g = _conv_graph()
    other = Graph("other")
    stray = other.add_input("stray", TensorType((1, 4, 6, 6)))
    g.nodes[-1].set_input(0, stray)
    with pytest.raises(LpdcGraphError, match=r"node 'relu1'.*dangling"):
        g.verify()


def test_cycle_is_reported_with_a_node_name():
    g = _conv_graph()
    relu = g.nodes[-1]
    add = g.add_node("add", [g.value("conv1"), g.value("conv1")], name="add1")
    add.set_input(1, relu.output)  # add1 uses relu1 ...
    relu.set_input(0, add.output)  # ... and relu1 uses add1: a cycle
    with pytest.raises(LpdcGraphError, match="cycle|before it is defined"):
        g.verify()
    with pytest.raises(LpdcGraphError, match=r"cycle: .*'(add1|relu1)'"):
        g.toposort()


def test_unknown_op_lists_near_matches():
    g = _conv_graph()
    node = g.nodes[-1]
    node.op = "rleu"
    with pytest.raises(LpdcUnsupportedError, match=r"unknown op 'rleu' \(did you mean relu"):
        g.verify()
    with pytest.raises(LpdcUnsupportedError, match="unknown op 'convolution'"):
        Graph().add_node("convolution", [])


def test_negative_dimension_is_refused():
    with pytest.raises(LpdcTypeError, match="negative dimension"):
        TensorType((1, -3, 4, 4))
    g = Graph("g")
    with pytest.raises(LpdcError, match="node 'r'.*bad reshape target"):
        g.op("reshape", g.add_input("x", TensorType((2, 3))), name="r", shape=[-2, 3])
    text = "graph @g(%x: f32[1,-2]) -> (%x) {\n  return %x\n}"
    with pytest.raises(LpdcError, match="negative dimension"):
        lpdc.parse(text)


def test_node_with_wrong_arity_or_attribute():
    g = Graph("g")
    x = g.add_input("x", TensorType((2, 3)))
    with pytest.raises(LpdcTypeError, match="node 'r' .*takes 1 inputs"):
        g.add_node("relu", [x, x], name="r")
    with pytest.raises(LpdcTypeError, match="attribute 'stride' of op 'conv' must be a list"):
        g.op("conv", g.add_input("y", TensorType((1, 1, 4, 4))), g.add_const(np.ones((1, 1, 1, 1), np.float32)),
             stride=2)


def test_bad_runtime_inputs():
    exe = compile_numpy(_conv_graph())
    with pytest.raises(LpdcExecutionError, match="missing input 'x'"):
        exe.run({})
    with pytest.raises(LpdcExecutionError, match=r"input 'x' has shape \[1, 3, 9, 9\]"):
        exe.run({"x": np.zeros((1, 3, 9, 9), np.float32)})
    with pytest.raises(LpdcExecutionError, match="unknown input 'y'"):
        exe.run({"x": np.zeros((1, 3, 8, 8), np.float32), "y": np.zeros(1)})
    with pytest.raises(LpdcExecutionError, match="dtype"):
        exe.run({"x": np.zeros((1, 3, 8, 8), np.complex64)})


def test_kernel_failure_is_wrapped_with_the_node_name(monkeypatch):
    from lpdc.backends.numpy import kernels

    def broken(node, ins, g):
        return [np.linalg.inv(np.zeros((2, 2)))]

    monkeypatch.setitem(kernels.KERNELS, "relu", broken)
    exe = compile_numpy(_conv_graph())
    with pytest.raises(LpdcExecutionError, match=r"node 'relu1' \(relu\): LinAlgError"):
        exe.run({"x": np.zeros((1, 3, 8, 8), np.float32)})


def test_erase_refuses_a_node_in_use():
    g = _conv_graph()
    with pytest.raises(LpdcGraphError, match="still used"):
        g.erase(g.nodes[2])


def test_unknown_target_lists_known_devices():
    with pytest.raises(LpdcTargetError, match="unknown device 'mail'.*known devices: numpy, x86, a72, a53, mali"):
        lpdc.Target("mail+a72")
    assert [d.name for d in lpdc.Target("mali+a72").devices] == ["mali", "a72"]
    with pytest.raises(LpdcTargetError):
        lpdc.compile(_conv_graph(), target="nonsense")


def test_bad_model_paths():
    with pytest.raises(LpdcError, match="no such file"):
        lpdc.load("does/not/exist.onnx")
    with pytest.raises(LpdcError, match="unknown zoo model 'nope'"):
        lpdc.load("zoo:nope")


def test_node_class_is_not_constructed_with_dangling_users():
    # Building through the graph keeps use lists right; a manual Node has none.
    n = Node("relu", "n", {})
    assert n.inputs == () and n.outputs == []


def test_resource_limits_refuse_before_allocating():
    from lpdc.errors import LpdcLimitError
    from lpdc.ir.limits import override

    with pytest.raises(LpdcLimitError, match="over the limit"):
        TensorType((1 << 20, 1 << 20))  # 2**40 elements: refused, nothing allocated
    g = Graph("g")
    x = g.add_input("x", TensorType((1, 4)))
    with override(max_nodes=3):
        y = g.op("relu", x)
        y = g.op("relu", y)
        y = g.op("relu", y)
        with pytest.raises(LpdcLimitError, match="4 nodes, over the limit of 3"):
            g.op("relu", y)
    g.op("relu", y)  # the default limit is back outside the block
