"""ONNX's own node conformance cases, run through `lpdc.onnx_backend` on the NumPy backend.

The onnx wheel ships no test data files, but `collect_testcases` builds every node case in
memory (model, inputs, expected outputs, tolerances). In scope: every case whose nodes all
belong to the op set the ONNX frontend covers. Each runs as its own test, compared the way
ONNX's runner compares (same shape and dtype, assert_allclose with the case's rtol/atol).
Exclusions are listed below with their reasons; they are checked to still fail cleanly (an
LpdcError, never a wrong answer), so the list cannot silently go stale.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from lpdc.errors import LpdcError
from lpdc.onnx_backend import LpdcBackend, static_inputs

with warnings.catch_warnings():  # building the cases trips NumPy overflow warnings in unrelated ops
    warnings.simplefilter("ignore")
    from onnx.backend.test.case.node import collect_testcases

    ALL_CASES = collect_testcases(None)

OP_SET = frozenset("""
    Conv ConvTranspose Gemm MatMul BatchNormalization Relu LeakyRelu PRelu Clip Sigmoid Tanh HardSigmoid HardSwish
    Softmax MaxPool AveragePool GlobalAveragePool GlobalMaxPool LRN Add Sub Mul Div Sum Max Min Mean Concat Split
    Slice Flatten Reshape Transpose Squeeze Unsqueeze Pad Dropout Identity Resize Upsample Shape Gather ReduceMean
    QuantizeLinear DequantizeLinear QLinearConv ConvInteger Constant""".split())

_DTYPE = "element type the IR does not have (8-bit floats, 4-/2-bit integers, 4-bit floats)"
# Exotic element types: outside what the IR can represent, so not counted in scope.
EXOTIC_DTYPE = {name: _DTYPE for name in (
    "test_dequantizelinear_e4m3fn", "test_dequantizelinear_e4m3fn_float16", "test_dequantizelinear_e4m3fn_zero_point",
    "test_dequantizelinear_e5m2", "test_dequantizelinear_uint4", "test_dequantizelinear_int4",
    "test_dequantizelinear_uint2", "test_dequantizelinear_int2", "test_dequantizelinear_float4e2m1",
    "test_quantizelinear_e4m3fn", "test_quantizelinear_e5m2", "test_quantizelinear_uint4", "test_quantizelinear_int4",
    "test_quantizelinear_uint2", "test_quantizelinear_int2", "test_quantizelinear_float4e2m1")}
# Features the IR does not model: counted in scope, as not passed.
UNSUPPORTED = {
    "test_identity_sequence": "sequence-typed input (the IR has tensors only)",
    "test_identity_opt": "optional-typed input (the IR has tensors only)",
    "test_training_dropout": "training-mode Dropout draws a random mask",
    "test_training_dropout_mask": "training-mode Dropout draws a random mask",
    "test_training_dropout_default": "training-mode Dropout draws a random mask",
    "test_training_dropout_default_mask": "training-mode Dropout draws a random mask",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output (the IR pool has one output)",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output (the IR pool has one output)",
    "test_convtranspose_3d": "3-D transposed convolution (the IR's convolutions are 2-D; 1-D ones are lifted)",
}
EXCLUDED = {**EXOTIC_DTYPE, **UNSUPPORTED}


def _ops(graph) -> set[str]:
    return {n.op_type for n in graph.node}


IN_SCOPE = sorted((c for c in ALL_CASES if _ops(c.model.graph) <= OP_SET), key=lambda c: c.name)
BY_NAME = {c.name: c for c in IN_SCOPE}


def _arrays(values) -> list[np.ndarray]:
    from onnx import numpy_helper

    return [numpy_helper.to_array(v) if hasattr(v, "HasField") else np.asarray(v) for v in values]


def _run_case(case) -> None:
    rep = LpdcBackend.prepare(case.model)
    for inputs, outputs in case.data_sets:
        got = rep.run(_arrays(inputs))
        want = _arrays(outputs)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype, f"{g.dtype}{list(g.shape)} vs {w.dtype}{list(w.shape)}"
            np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol)


@pytest.mark.parametrize("name", [c.name for c in IN_SCOPE if c.name not in EXCLUDED])
def test_node_case(name):
    _run_case(BY_NAME[name])


def test_exclusions_are_known_and_fail_cleanly():
    """Every excluded case exists, is in scope, and is refused with an LpdcError naming the cause."""
    assert set(EXCLUDED) <= set(BY_NAME), sorted(set(EXCLUDED) - set(BY_NAME))
    for name in sorted(EXCLUDED):
        with pytest.raises(LpdcError):
            _run_case(BY_NAME[name])


def test_coverage_goal():
    """>= 95% of the in-scope cases pass (exotic element types aside); none fails (test_node_case)."""
    total = len(IN_SCOPE)
    scope = total - len(EXOTIC_DTYPE)
    passed = total - len(EXCLUDED)
    assert total >= 350, f"only {total} in-scope cases: did onnx's test cases change?"
    assert passed / scope >= 0.95, f"{passed}/{scope} passed"
    print(f"\nONNX node conformance: {passed} passed, {len(EXCLUDED)} excluded ({len(EXOTIC_DTYPE)} exotic dtypes), "
          f"0 failed of {total} in-scope cases; {passed}/{scope} = {passed / scope:.1%} of the representable ones")


def test_backend_freezes_only_parameter_inputs():
    """Inputs feeding parameter slots become constants; data inputs stay inputs, even through Shape."""
    reshape = BY_NAME["test_reshape_reordered_all_dims"].model.graph
    assert static_inputs(reshape) == {reshape.node[0].input[1]}
    crop = BY_NAME["test_center_crop_pad_crop_expanded"].model.graph
    assert static_inputs(crop) == {"shape"}  # x reaches the Pad only through Shape: it stays data
    assert LpdcBackend.supports_device("CPU") and not LpdcBackend.supports_device("CUDA")
