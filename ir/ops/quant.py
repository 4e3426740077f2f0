"""Quantization and layout ops: quantize, dequantize, requantize, layout_convert.

Quantization parameters live in the output *type* (TensorType.quant); the attributes here only
say which type to produce. Fixed-point dtypes (fxW_F) need no scale: it is 2**-F.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes
from ..registry import PURE, SHAPE_ONLY, Attr, FlopCount, register_op
from ..types import QuantParams, TensorType, is_blocked_layout
from . import _shape as S

_QATTRS = {
    "dtype": Attr("i8", "str"),
    "scale": Attr([], "floats"),
    "zero_point": Attr([], "ints"),
    "axis": Attr(None, "int"),  # None: per tensor
}


def _quant_type(x: TensorType, attrs: dict[str, Any], op: str) -> TensorType:
    dt = dtypes.check(attrs["dtype"])
    if dtypes.fixed_bits(dt) is not None:
        S.require(not attrs["scale"], f"{op} to fixed point {dt} takes no scale (it is 2**-F)")
        return TensorType(x.shape, dt, x.layout)
    S.require(dtypes.is_int(dt), f"{op} produces an integer or fixed-point dtype, not {dt}")
    scale = tuple(attrs["scale"])
    zp = tuple(attrs["zero_point"]) or (0,) * len(scale)
    info = _int_range(dt)
    S.require(all(info[0] <= z <= info[1] for z in zp), f"{op} zero points {zp[:4]} do not fit {dt}")
    axis = None if attrs["axis"] is None else S.norm_axis(attrs["axis"], x.rank)
    return TensorType(x.shape, dt, x.layout, QuantParams(scale, zp, axis))


def _int_range(dt: str) -> tuple[int, int]:
    import numpy as np

    info = np.iinfo(dtypes.to_numpy(dt))
    return int(info.min), int(info.max)


def _per_elem(**kw: int):
    return lambda ins, outs, attrs: FlopCount(**{k: v * outs[0].size for k, v in kw.items()})


@register_op("quantize", family="quant", inputs=("x",), attrs=_QATTRS, flops=_per_elem(div=1, add=1, cmp=2))
def _infer_quantize(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Float to integer: q = clamp(round_half_even(x / scale) + zero_point) (or x * 2**F for fixed point)."""
    x = S.present(ins[0], "x")
    S.require(dtypes.is_float(x.dtype), f"quantize needs a float input, got {x.dtype}")
    return [_quant_type(x, attrs, "quantize")]


@register_op(
    "dequantize", family="quant", inputs=("x",), attrs={"dtype": Attr("f32", "str")}, flops=_per_elem(mul=1, add=1)
)
def _infer_dequantize(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer to float with the input type's quantization: x = scale * (q - zero_point)."""
    x = S.present(ins[0], "x")
    is_fixed = dtypes.fixed_bits(x.dtype) is not None
    S.require(
        is_fixed or x.quant is not None or x.dtype == "i32",
        f"dequantize needs a quantized or fixed-point input, got {x.dtype} without quantization",
    )
    S.require(dtypes.is_float(attrs["dtype"]), "dequantize produces a float dtype")
    return [TensorType(x.shape, attrs["dtype"], x.layout)]


# Integer mode: the real rescale factor of each channel is multiplier * 2**-shift (gemmlowp style).
_REQ_ATTRS = {**_QATTRS, "multiplier": Attr([], "ints"), "shift": Attr([], "ints")}


@register_op("requantize", family="quant", inputs=("x",), attrs=_REQ_ATTRS, flops=_per_elem(mul=1, add=2, cmp=2))
def _infer_requantize(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Integer to integer under new quantization parameters (an int32 accumulator to int8, say).

    With `multiplier`/`shift` (one pair, or one per channel of the input's quantization axis) the
    rescale is integer-only: q = zp + round_half_even((x - zp_in) * multiplier / 2**shift).
    """
    x = S.present(ins[0], "x")
    S.require(not dtypes.is_float(x.dtype), f"requantize needs an integer input, got {x.dtype}")
    mult, shift = attrs["multiplier"], attrs["shift"]
    S.require(len(mult) == len(shift), f"requantize has {len(mult)} multipliers but {len(shift)} shifts")
    if mult:
        per_channel = x.quant is not None and x.quant.axis is not None
        S.require(
            len(mult) == 1 or (per_channel and len(mult) == len(x.quant.scale)),
            f"requantize takes one multiplier or one per input channel, got {len(mult)}",
        )
        S.require(
            all(0 <= m < 2**31 for m in mult) and all(0 <= s <= 62 for s in shift),
            "requantize multipliers must lie in [0, 2**31) and shifts in [0, 62]",
        )
    return [_quant_type(x, attrs, "requantize")]


def layout_shape(shape: tuple[int, ...], src: str, dst: str) -> tuple[int, ...]:
    """Shape of a 4-D tensor moved from layout src to dst (NCHW, NHWC, NCHW<k>c)."""
    n, c, h, w = _logical(shape, src)
    if dst == "NCHW":
        return (n, c, h, w)
    if dst == "NHWC":
        return (n, h, w, c)
    block = int(dst[4:-1])
    return (n, -(-c // block), h, w, block)


def _logical(shape: tuple[int, ...], layout: str) -> tuple[int, int, int, int]:
    if layout == "NHWC":
        n, h, w, c = shape
        return n, c, h, w
    if is_blocked_layout(layout):
        n, cb, h, w, b = shape
        return n, cb * b, h, w
    n, c, h, w = shape
    return n, c, h, w


@register_op(
    "layout_convert",
    family="quant",
    inputs=("x",),
    attrs={"src": Attr("NCHW", "str"), "dst": Attr("NHWC", "str"), "channels": Attr(0, "int")},
    traits=(PURE, SHAPE_ONLY),
)
def _infer_layout_convert(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Move a 4-D activation between NCHW, NHWC and blocked NCHW<k>c (zero-padded channel blocks;
    `channels` records the true channel count so converting back drops the padding)."""
    x = S.present(ins[0], "x")
    src, dst = attrs["src"], attrs["dst"]
    for lay in (src, dst):
        S.require(lay in ("NCHW", "NHWC") or is_blocked_layout(lay), f"layout_convert does not know layout {lay}")
    S.require(
        (x.effective_layout or "NCHW") == src, f"layout_convert src {src} but input layout is {x.effective_layout}"
    )
    shape = layout_shape(x.shape, src, dst)
    if not is_blocked_layout(dst) and is_blocked_layout(src):
        S.require(attrs["channels"] > 0, "layout_convert from a blocked layout needs `channels`")
        n, _, h, w = _logical(x.shape, src)
        shape = layout_shape((n, attrs["channels"], h, w), "NCHW", dst)
    return [
        TensorType(
            shape, x.dtype, None if dst == "NCHW" else dst, x.quant if x.quant and x.quant.axis is None else None
        )
    ]
