"""Broadcasting arithmetic: add, sub, mul, div, max, min, pow, and Caffe's variadic eltwise.

`add` carries the activation epilogue (see nn.py) so a ReLU after a residual add can fuse.
"""

from __future__ import annotations

from typing import Any

from ..registry import ELEMENTWISE, LAYOUT_AGNOSTIC, PURE, Attr, FlopCount, register_op
from ..types import TensorType
from . import _shape as S
from .nn import EPILOGUE_ATTRS, epilogue_flops


def _binary_type(ins: list[TensorType | None], op: str) -> TensorType:
    a, b = S.present(ins[0], "a"), S.present(ins[1], "b")
    dtype = S.same_dtype([a, b], op)
    shape = S.broadcast(a.shape, b.shape)
    # Keep the layout of the operand that already has the full shape (a bias is broadcast onto it).
    layout = a.layout if a.shape == shape else b.layout if b.shape == shape else None
    return TensorType(shape, dtype, layout)


_BINARY = {
    "add": ("a + b", "add"),
    "sub": ("a - b", "add"),
    "mul": ("a * b", "mul"),
    "div": ("a / b (integer inputs: truncation toward zero as in ONNX)", "div"),
    "max": ("elementwise maximum", "cmp"),
    "min": ("elementwise minimum", "cmp"),
    "pow": ("a ** b", "other"),
}


def _binary_flops(kind: str):
    def fn(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
        n = outs[0].size
        return FlopCount(**{kind: n}) + epilogue_flops(attrs, outs[0])
    return fn


def _make_binary(name: str):
    def infer(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
        out = _binary_type(ins, name)
        if name == "add":
            S.require(attrs["activation"] != "prelu" or (len(ins) > 2 and ins[2] is not None),
                      "add with prelu activation needs a slope input")
        return [out]
    return infer


for _name, (_doc, _kind) in _BINARY.items():
    _is_add = _name == "add"
    register_op(
        _name, family="elementwise",
        inputs=("a", "b", "slope") if _is_add else ("a", "b"), min_inputs=2,
        attrs=dict(EPILOGUE_ATTRS) if _is_add else {},
        traits=(PURE, ELEMENTWISE, LAYOUT_AGNOSTIC),
        flops=_binary_flops(_kind), doc=_doc,
    )(_make_binary(_name))


def _eltwise_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    n = outs[0].size * (len(ins) - 1)
    kind = {"sum": "add", "mean": "add", "prod": "mul", "max": "cmp", "min": "cmp"}[attrs["op"]]
    counts = FlopCount(**{kind: n})
    if attrs["op"] == "mean":
        counts = counts + FlopCount(div=outs[0].size)
    if attrs["coeffs"]:
        counts = counts + FlopCount(mul=outs[0].size * len(ins))
    return counts


@register_op("eltwise", family="elementwise", inputs=("x",), variadic=True,
             attrs={"op": Attr("sum", "str", ("sum", "prod", "max", "min", "mean")), "coeffs": Attr([], "floats")},
             traits=(PURE, ELEMENTWISE, LAYOUT_AGNOSTIC), flops=_eltwise_flops)
def _infer_eltwise(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """N-ary sum (with optional per-input coefficients, Caffe), prod, max, min or mean, broadcasting."""
    ts = [S.present(t, f"x{i}") for i, t in enumerate(ins)]
    dtype = S.same_dtype(ts, "eltwise")
    coeffs = attrs["coeffs"]
    S.require(not coeffs or (attrs["op"] == "sum" and len(coeffs) == len(ts)),
              f"eltwise coeffs need op=sum and one per input ({len(ts)}), got {coeffs}")
    shape = S.broadcast(*(t.shape for t in ts))
    layout = next((t.layout for t in ts if t.shape == shape), None)
    return [TensorType(shape, dtype, layout)]
