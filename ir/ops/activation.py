"""Unary activations and math: relu, leaky_relu, prelu, clip, sigmoid, tanh, hard_sigmoid,
hard_swish, elu, abs, power (Caffe: (shift + scale*x)**power), exp, log, sqrt, neg, softplus."""

from __future__ import annotations

from typing import Any

from ..registry import ACTIVATION, ELEMENTWISE, HAS_WEIGHTS, LAYOUT_AGNOSTIC, PURE, Attr, FlopCount, register_op
from ..types import TensorType
from . import _shape as S

_UNARY = (PURE, ELEMENTWISE, LAYOUT_AGNOSTIC)


def _counts(**per_elem: int):
    def fn(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
        n = outs[0].size
        return FlopCount(**{k: v * n for k, v in per_elem.items()})
    return fn


def _same(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    x = S.present(ins[0], "x")
    return [x]


# name -> (attributes, per-element operation counts, is a fusable activation, doc)
_TABLE: dict[str, tuple[dict[str, Attr], dict[str, int], bool, str]] = {
    "relu": ({}, {"cmp": 1}, True, "max(x, 0)"),
    "leaky_relu": ({"alpha": Attr(0.01, "float")}, {"cmp": 1, "mul": 1}, True, "x if x >= 0 else alpha*x"),
    "clip": ({"min": Attr(float("-inf"), "float"), "max": Attr(float("inf"), "float")}, {"cmp": 2}, True,
             "min(max(x, min), max); ReLU6 is clip(0, 6)"),
    "sigmoid": ({}, {"other": 1, "add": 1, "div": 1}, True, "1 / (1 + exp(-x))"),
    "tanh": ({}, {"other": 1}, True, "tanh(x)"),
    "hard_sigmoid": ({"alpha": Attr(0.2, "float"), "beta": Attr(0.5, "float")}, {"mul": 1, "add": 1, "cmp": 2}, True,
                     "clip(alpha*x + beta, 0, 1)"),
    "hard_swish": ({}, {"mul": 2, "add": 1, "cmp": 2}, True, "x * clip(x/6 + 1/2, 0, 1)"),
    "elu": ({"alpha": Attr(1.0, "float")}, {"cmp": 1, "other": 1, "mul": 1, "add": 1}, True,
            "x if x > 0 else alpha*(exp(x)-1)"),
    "abs": ({}, {"cmp": 1}, False, "|x|"),
    "power": ({"power": Attr(1.0, "float"), "scale": Attr(1.0, "float"), "shift": Attr(0.0, "float")},
              {"mul": 1, "add": 1, "other": 1}, False, "(shift + scale*x) ** power (Caffe Power)"),
    "exp": ({}, {"other": 1}, False, "exp(x)"),
    "log": ({}, {"other": 1}, False, "natural log"),
    "sqrt": ({}, {"other": 1}, False, "square root"),
    "neg": ({}, {"mul": 1}, False, "-x"),
    "reciprocal": ({}, {"div": 1}, False, "1/x"),
    "softplus": ({}, {"other": 2, "add": 1}, False, "log(1 + exp(x))"),
}

for _name, (_attrs, _ops, _fusable, _doc) in _TABLE.items():
    _traits = _UNARY + ((ACTIVATION,) if _fusable else ())
    register_op(_name, family="activation", inputs=("x",), attrs=_attrs, traits=_traits, flops=_counts(**_ops),
                doc=_doc)(_same)


@register_op("prelu", family="activation", inputs=("x", "slope"), traits=(PURE, ACTIVATION, HAS_WEIGHTS),
             flops=_counts(cmp=1, mul=1))
def _infer_prelu(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """x if x >= 0 else slope*x; slope broadcasts against x NumPy-style ([C,1,1] for channels)."""
    x, slope = S.present(ins[0], "x"), S.present(ins[1], "slope")
    S.require(S.broadcast(x.shape, slope.shape) == x.shape,
              f"prelu slope {list(slope.shape)} does not broadcast to input {list(x.shape)}")
    return [x]
