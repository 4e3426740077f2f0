"""Pooling: max_pool, avg_pool (Caffe ceil mode and pad clipping), global_avg_pool, global_max_pool."""

from __future__ import annotations

from typing import Any

from ..registry import LAYOUT_AGNOSTIC, PURE, Attr, FlopCount, register_op
from ..types import TensorType
from . import _shape as S

_POOL_ATTRS = {
    "kernel": Attr([1, 1], "ints"),
    "stride": Attr([1, 1], "ints"),
    "pad": Attr([0, 0, 0, 0], "ints"),  # top, left, bottom, right
    "dilation": Attr([1, 1], "ints"),
    "ceil_mode": Attr(False, "bool"),
    # avg_pool only: divide by the window clipped to the padded input (Caffe, ONNX
    # count_include_pad=1) or by the number of real input elements in the window.
    "count_include_pad": Attr(False, "bool"),
}


def _pool_flops(kind: str):
    def fn(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
        kh, kw = S.pair(attrs["kernel"], "kernel")
        n = outs[0].size * (kh * kw - 1)
        if kind == "max":
            return FlopCount(cmp=n)
        return FlopCount(add=n, div=outs[0].size)

    return fn


def _infer_window(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    x = S.present(ins[0], "x")
    c_ax, h_ax, w_ax = S.nchw_axes(x)
    kh, kw = S.pair(attrs["kernel"], "kernel")
    sh, sw = S.pair(attrs["stride"], "stride")
    dh, dw = S.pair(attrs["dilation"], "dilation")
    pt, pl, pb, pr = S.pads4(attrs["pad"])
    S.require(
        pt < kh * dh and pb < kh * dh and pl < kw * dw and pr < kw * dw,
        f"padding {[pt, pl, pb, pr]} must be smaller than the kernel {[kh, kw]}",
    )
    ho = S.window_out(x.shape[h_ax], kh, sh, pt, pb, dh, attrs["ceil_mode"])
    wo = S.window_out(x.shape[w_ax], kw, sw, pl, pr, dw, attrs["ceil_mode"])
    return [S.make_nchw_like(x, x.shape[0], x.shape[c_ax], ho, wo)]


@register_op("max_pool", family="pool", inputs=("x",), attrs=_POOL_ATTRS, traits=(PURE,), flops=_pool_flops("max"))
def _infer_max_pool(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Max over each window; padding never wins."""
    return _infer_window(ins, attrs)


@register_op("avg_pool", family="pool", inputs=("x",), attrs=_POOL_ATTRS, traits=(PURE,), flops=_pool_flops("avg"))
def _infer_avg_pool(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Mean over each window (see count_include_pad for the divisor)."""
    return _infer_window(ins, attrs)


def _global_flops(kind: str):
    def fn(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
        x = S.present(ins[0], "x")
        n = x.size - outs[0].size
        return FlopCount(cmp=n) if kind == "max" else FlopCount(add=n, div=outs[0].size)

    return fn


def _infer_global(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    x = S.present(ins[0], "x")
    c_ax, _, _ = S.nchw_axes(x)
    return [S.make_nchw_like(x, x.shape[0], x.shape[c_ax], 1, 1)]


@register_op(
    "global_avg_pool", family="pool", inputs=("x",), traits=(PURE, LAYOUT_AGNOSTIC), flops=_global_flops("avg")
)
def _infer_gap(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Mean over the spatial axes, keeping them as 1x1."""
    return _infer_global(ins, attrs)


@register_op(
    "global_max_pool", family="pool", inputs=("x",), traits=(PURE, LAYOUT_AGNOSTIC), flops=_global_flops("max")
)
def _infer_gmp(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Max over the spatial axes, keeping them as 1x1."""
    return _infer_global(ins, attrs)
