"""Reference activations; `apply_activation` is shared with the conv/fc/add epilogues."""

from __future__ import annotations

import numpy as np

from . import kernel


def apply_activation(y: np.ndarray, kind: str, alpha: float = 0.0, beta: float = 0.0,
                     slope: np.ndarray | None = None) -> np.ndarray:
    """Apply one named activation (the epilogue vocabulary of ir/ops/nn.py)."""
    if kind == "none":
        return y
    if kind == "relu":
        return np.maximum(y, 0).astype(y.dtype, copy=False)
    if kind == "relu6":
        return np.clip(y, 0, 6).astype(y.dtype, copy=False)
    if kind == "clip":
        return np.clip(y, alpha, beta).astype(y.dtype, copy=False)
    if kind == "leaky_relu":
        return np.where(y >= 0, y, y * np.asarray(alpha, y.dtype)).astype(y.dtype, copy=False)
    if kind == "prelu":
        assert slope is not None
        return np.where(y >= 0, y, y * slope).astype(y.dtype, copy=False)
    if kind == "sigmoid":
        return _sigmoid(y)
    if kind == "tanh":
        return np.tanh(y)
    if kind == "hard_sigmoid":
        return np.clip(y * np.asarray(alpha, y.dtype) + np.asarray(beta, y.dtype), 0, 1).astype(y.dtype, copy=False)
    if kind == "hard_swish":
        return (y * np.clip(y / np.asarray(6, y.dtype) + np.asarray(0.5, y.dtype), 0, 1)).astype(y.dtype, copy=False)
    if kind == "elu":
        return np.where(y > 0, y, np.asarray(alpha, y.dtype) * np.expm1(np.minimum(y, 0))).astype(y.dtype, copy=False)
    raise AssertionError(f"unknown activation {kind}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1 + e)
    return out


@kernel("relu", "sigmoid", "tanh", "hard_swish")
def _simple(node, ins, g):
    return [apply_activation(ins[0], node.op)]


@kernel("leaky_relu", "elu")
def _alpha(node, ins, g):
    return [apply_activation(ins[0], node.op, node.attrs["alpha"])]


@kernel("hard_sigmoid")
def _hard_sigmoid(node, ins, g):
    return [apply_activation(ins[0], "hard_sigmoid", node.attrs["alpha"], node.attrs["beta"])]


@kernel("clip")
def _clip(node, ins, g):
    x = ins[0]
    lo, hi = node.attrs["min"], node.attrs["max"]
    if x.dtype.kind in "iu":  # keep integer bounds inside the type's range
        info = np.iinfo(x.dtype)
        lo, hi = max(lo, info.min), min(hi, info.max)
    return [np.clip(x, lo, hi).astype(x.dtype, copy=False)]


@kernel("prelu")
def _prelu(node, ins, g):
    return [apply_activation(ins[0], "prelu", slope=ins[1])]


_UNARY = {
    "abs": np.abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "neg": np.negative,
    "reciprocal": lambda x: np.asarray(1, x.dtype) / x,
    "softplus": lambda x: np.logaddexp(np.asarray(0, x.dtype), x),
}


@kernel(*_UNARY)
def _unary(node, ins, g):
    with np.errstate(all="ignore"):  # log(0) = -inf and sqrt(-1) = nan are the defined results
        return [np.asarray(_UNARY[node.op](ins[0])).astype(ins[0].dtype, copy=False)]


@kernel("power")
def _power(node, ins, g):
    a = node.attrs
    x = ins[0]
    with np.errstate(all="ignore"):
        y = (np.asarray(a["shift"], x.dtype) + np.asarray(a["scale"], x.dtype) * x) ** np.asarray(a["power"], x.dtype)
    return [y.astype(x.dtype, copy=False)]
