"""Reference broadcasting arithmetic and Caffe's eltwise."""

from __future__ import annotations

import numpy as np

from . import kernel
from .activation import apply_activation


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":  # ONNX integer division truncates toward zero
        return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)
    return a / b


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _div, "max": np.maximum,
           "min": np.minimum, "pow": np.power}


@kernel(*_BINARY)
def _binary(node, ins, g):
    a, b = ins[0], ins[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        y = np.asarray(_BINARY[node.op](a, b)).astype(a.dtype, copy=False)
    if node.op == "add":
        at = node.attrs
        y = apply_activation(y, at["activation"], at["act_alpha"], at["act_beta"], ins[2] if len(ins) > 2 else None)
    return [y]


@kernel("eltwise")
def _eltwise(node, ins, g):
    op, coeffs = node.attrs["op"], node.attrs["coeffs"]
    xs = [x * np.asarray(c, x.dtype) for x, c in zip(ins, coeffs, strict=True)] if coeffs else list(ins)
    shape = np.broadcast_shapes(*(x.shape for x in xs))
    fn = {"sum": np.add, "mean": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}[op]
    y = np.broadcast_to(xs[0], shape).copy()
    for x in xs[1:]:
        y = fn(y, x)
    if op == "mean":
        y = y / np.asarray(len(xs), y.dtype)
    return [y.astype(ins[0].dtype, copy=False)]
