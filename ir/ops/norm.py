"""Normalisation: batch_norm, scale, bias (Caffe), lrn, normalize (SSD), softmax, log_softmax."""

from __future__ import annotations

from typing import Any

from ..registry import HAS_WEIGHTS, PURE, Attr, FlopCount, register_op
from ..types import TensorType
from . import _shape as S


def channel_axis(x: TensorType) -> int:
    """Axis 1 (or C of NHWC) for rank >= 2 activations."""
    if x.rank == 4:
        return S.nchw_axes(x)[0]
    S.require(x.rank >= 2, f"expected rank >= 2, got {list(x.shape)}")
    return 1


def _bn_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    n = outs[0].size
    return FlopCount(mul=n, add=2 * n, div=n)


@register_op(
    "batch_norm",
    family="norm",
    inputs=("x", "scale", "bias", "mean", "var"),
    attrs={"eps": Attr(1e-5, "float")},
    traits=(PURE, HAS_WEIGHTS),
    flops=_bn_flops,
)
def _infer_bn(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """y = scale * (x - mean) / sqrt(var + eps) + bias, per channel (inference form)."""
    x = S.present(ins[0], "x")
    c = x.shape[channel_axis(x)]
    for name, t in zip(("scale", "bias", "mean", "var"), ins[1:], strict=True):
        S.require(S.present(t, name).size == c, f"batch_norm {name} has {t.size} values for {c} channels")
    S.require(attrs["eps"] >= 0, f"batch_norm eps {attrs['eps']} is negative")
    return [x]


def _affine_flops(kind: str):
    def fn(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
        n = outs[0].size
        has_bias = kind == "scale" and len(ins) > 2 and ins[2] is not None
        return FlopCount(mul=n, add=n if has_bias else 0) if kind == "scale" else FlopCount(add=n)

    return fn


def _param_axes(x: TensorType, p: TensorType, axis: int, op: str) -> None:
    axis = S.norm_axis(axis, x.rank)
    dims = tuple(d for d in p.shape)
    # Caffe lets the parameter be given with trailing 1s stripped or as a flat vector over one axis.
    S.require(
        x.shape[axis : axis + len(dims)] == dims or (p.rank == 1 and x.shape[axis] == p.size),
        f"{op} parameter {list(p.shape)} does not match input {list(x.shape)} from axis {axis}",
    )


@register_op(
    "scale",
    family="norm",
    inputs=("x", "s", "b"),
    min_inputs=2,
    attrs={"axis": Attr(1, "int")},
    traits=(PURE, HAS_WEIGHTS),
    flops=_affine_flops("scale"),
)
def _infer_scale(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Caffe Scale: y = x * s (+ b), s laid over x's axes starting at `axis`."""
    x, s = S.present(ins[0], "x"), S.present(ins[1], "s")
    _param_axes(x, s, attrs["axis"], "scale")
    if len(ins) > 2 and ins[2] is not None:
        S.require(ins[2].shape == s.shape or ins[2].size == s.size, "scale bias must match the scale's shape")
    return [x]


@register_op(
    "bias",
    family="norm",
    inputs=("x", "b"),
    attrs={"axis": Attr(1, "int")},
    traits=(PURE, HAS_WEIGHTS),
    flops=_affine_flops("bias"),
)
def _infer_bias(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Caffe Bias: y = x + b, b laid over x's axes starting at `axis`."""
    x, b = S.present(ins[0], "x"), S.present(ins[1], "b")
    _param_axes(x, b, attrs["axis"], "bias")
    return [x]


def _lrn_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    n, size = outs[0].size, attrs["size"]
    window = size * size if attrs["region"] == "within" else size
    # per output: window squares + alpha/n scaling (mul), window-1 sums + bias (add), one pow, one divide
    return FlopCount(mul=n * (window + 1), add=n * window, div=n, other=n)


@register_op(
    "lrn",
    family="norm",
    inputs=("x",),
    attrs={
        "size": Attr(5, "int"),
        "alpha": Attr(1e-4, "float"),
        "beta": Attr(0.75, "float"),
        "bias": Attr(1.0, "float"),
        "region": Attr("across", "str", ("across", "within")),
    },
    flops=_lrn_flops,
)
def _infer_lrn(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Local response normalisation: x / (bias + alpha/n * sum(x^2 over window))^beta, window across
    channels (n = size) or within a channel (size x size spatial window, n = size^2)."""
    x = S.present(ins[0], "x")
    S.nchw_axes(x)
    S.require(attrs["size"] >= 1, f"lrn size {attrs['size']} must be >= 1")
    S.require(attrs["region"] == "across" or attrs["size"] % 2 == 1, "lrn within-channel size must be odd")
    return [x]


def _normalize_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    # square and scale each element (2 mul), sum the squares (add), divide by the norm; one sqrt per norm
    x = outs[0]
    c_ax, h_ax, w_ax = S.nchw_axes(x)
    norms = x.shape[0] if attrs["across_spatial"] else x.shape[0] * x.shape[h_ax] * x.shape[w_ax]
    return FlopCount(mul=2 * x.size, add=x.size, div=x.size, other=norms)


@register_op(
    "normalize",
    family="norm",
    inputs=("x", "scale"),
    attrs={"across_spatial": Attr(True, "bool"), "channel_shared": Attr(True, "bool"), "eps": Attr(1e-10, "float")},
    traits=(PURE, HAS_WEIGHTS),
    flops=_normalize_flops,
)
def _infer_normalize(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """SSD Normalize: L2-normalise over (C,H,W) or over C at each pixel, then multiply by scale."""
    x, s = S.present(ins[0], "x"), S.present(ins[1], "scale")
    c = x.shape[S.nchw_axes(x)[0]]
    want = 1 if attrs["channel_shared"] else c
    S.require(s.size == want, f"normalize scale has {s.size} values, expected {want}")
    return [x]


def _softmax_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    n = outs[0].size
    return FlopCount(add=2 * n, cmp=n, div=n, other=n)


def _make_softmax(name: str):
    def infer(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
        x = S.present(ins[0], "x")
        S.norm_axis(attrs["axis"], x.rank)
        S.require(x.dtype.startswith("f"), f"{name} needs a float input, got {x.dtype}")
        return [x]

    return infer


for _name in ("softmax", "log_softmax"):
    register_op(
        _name,
        family="norm",
        inputs=("x",),
        attrs={"axis": Attr(-1, "int")},
        flops=_softmax_flops,
        doc=f"{_name} along one axis (numerically stable: max subtracted first)",
    )(_make_softmax(_name))
