"""Reference quantize, dequantize, requantize (affine and fixed point) and layout_convert."""

from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ..layout import from_nchw, to_nchw
from . import kernel


def broadcast_params(scale, zero_point, axis: int | None, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point as float64 arrays that broadcast over an `ndim`-D tensor (per `axis`)."""
    s = np.asarray(scale, np.float64)
    zp = np.asarray(zero_point, np.float64)
    if axis is not None:
        shape = [1] * ndim
        shape[axis] = -1
        s, zp = s.reshape(shape), zp.reshape(shape)
    return s, zp


def _broadcast_params(t, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    q = t.quant
    return broadcast_params(q.scale, q.zero_point, q.axis, ndim)


def _clamp_cast(q: np.ndarray, dtype: str) -> np.ndarray:
    np_t = dtypes.to_numpy(dtype)
    info = np.iinfo(np_t)
    return np.clip(q, info.min, info.max).astype(np_t)


def real_values(arr: np.ndarray, t) -> np.ndarray:
    """The real numbers a stored integer/fixed-point tensor of type `t` means (float64)."""
    bits = dtypes.fixed_bits(t.dtype)
    if bits is not None:
        return arr.astype(np.float64) * 2.0 ** -bits[1]
    if t.quant is None:
        return arr.astype(np.float64)
    scale, zp = _broadcast_params(t, arr.ndim)
    return (arr.astype(np.float64) - zp) * scale


def quantize_to(real: np.ndarray, t) -> np.ndarray:
    """Round half to even and saturate into the storage of type `t`."""
    bits = dtypes.fixed_bits(t.dtype)
    if bits is not None:
        return _clamp_cast(np.rint(real * 2.0 ** bits[1]), t.dtype)
    scale, zp = _broadcast_params(t, real.ndim)
    return _clamp_cast(np.rint(real / scale) + zp, t.dtype)


@kernel("quantize", "requantize")
def _quantize(node, ins, g):
    if node.op == "requantize" and node.attrs.get("multiplier"):
        return [_requantize_integer(node, ins[0])]
    real = real_values(ins[0], node.inputs[0].type) if node.op == "requantize" else ins[0].astype(np.float64)
    return [quantize_to(real, node.outputs[0].type)]


def _requantize_integer(node, x: np.ndarray) -> np.ndarray:
    """Integer-only rescale: zp_out + round_half_even((x - zp_in) * M / 2**shift), saturated.

    int64 holds the product exactly (|x| < 2**31, M < 2**31); rounding half to even in integers
    matches np.rint, so this equals the float rescale by M * 2**-shift bit for bit.
    """
    t_in, t_out = node.inputs[0].type, node.outputs[0].type
    acc = x.astype(np.int64)
    if t_in.quant is not None:
        acc = acc - _broadcast_params(t_in, x.ndim)[1].astype(np.int64)
    mult = np.asarray(node.attrs["multiplier"], np.int64)
    shift = np.asarray(node.attrs["shift"], np.int64)
    if mult.size > 1:
        shape = [1] * x.ndim
        shape[t_in.quant.axis] = -1
        mult, shift = mult.reshape(shape), shift.reshape(shape)
    prod = acc * mult
    floor = prod >> shift  # arithmetic shift: floor division by 2**shift
    rem = prod - (floor << shift)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 1)
    up = (rem > half) | ((rem == half) & (shift > 0) & (floor % 2 == 1))
    q = floor + up
    if t_out.quant is not None:
        q = q + _broadcast_params(t_out, x.ndim)[1].astype(np.int64)
    return _clamp_cast(q, t_out.dtype)


@kernel("dequantize")
def _dequantize(node, ins, g):
    return [real_values(ins[0], node.inputs[0].type).astype(dtypes.to_numpy(node.attrs["dtype"]))]


@kernel("layout_convert")
def _layout_convert(node, ins, g):
    a = node.attrs
    return [from_nchw(to_nchw(ins[0], a["src"], a["channels"]), a["dst"])]
