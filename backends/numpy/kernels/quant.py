"""Reference quantize, dequantize, requantize (affine and fixed point) and layout_convert."""

from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ..layout import from_nchw, to_nchw
from . import kernel


def _broadcast_params(t, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    q = t.quant
    scale = np.asarray(q.scale, np.float64)
    zp = np.asarray(q.zero_point, np.float64)
    if q.axis is not None:
        shape = [1] * ndim
        shape[q.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return scale, zp


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
    real = real_values(ins[0], node.inputs[0].type) if node.op == "requantize" else ins[0].astype(np.float64)
    return [quantize_to(real, node.outputs[0].type)]


@kernel("dequantize")
def _dequantize(node, ins, g):
    return [real_values(ins[0], node.inputs[0].type).astype(dtypes.to_numpy(node.attrs["dtype"]))]


@kernel("layout_convert")
def _layout_convert(node, ins, g):
    a = node.attrs
    return [from_nchw(to_nchw(ins[0], a["src"], a["channels"]), a["dst"])]
