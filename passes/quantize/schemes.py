"""`QFormat`: one concrete number format for a tensor, whether affine integer or dynamic fixed point.

A format maps reals to stored integers q in [qmin, qmax] and back:
    real = scale * (q - zero_point)        (per tensor, or per channel along `axis`)
Dynamic fixed point [IL.FL] with W = IL + FL bits is the special case scale = 2**-FL, zero_point = 0,
q in [-2**(W-1), 2**(W-1) - 1]. Rounding is half to even everywhere (as the IR's quantize op).

Storage: the IR has fixed-point dtypes fx8_F / fx16_F / fx32_F and integers i8 u8 i16 i32. A W-bit
format lives in the narrowest storage that holds it (fx8 for W <= 8 and FL <= 8, else fx16 ...) with
its values clamped to W bits; `clamped` says that the storage range is wider than the format's,
so the graph needs an explicit clip before a quantize op (which saturates to the storage range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...backends.numpy.kernels.quant import broadcast_params
from ...errors import LpdcError
from ...ir import QuantParams, TensorType, dtypes

MIN_BITS, MAX_BITS = 2, 16


def check_bits(bits: int, where: str, lo: int = MIN_BITS, hi: int = MAX_BITS) -> int:
    """`bits` if it is an int in [lo, hi], else an LpdcError naming `where`."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not lo <= int(bits) <= hi:
        raise LpdcError(f"bit width {bits!r} is outside {lo}-{hi}", where=where)
    return int(bits)


@dataclass(frozen=True)
class QFormat:
    """A concrete quantization format (see the module docstring)."""

    dtype: str
    bits: int
    qmin: int
    qmax: int
    scale: tuple[float, ...] = (1.0,)
    zero_point: tuple[int, ...] = (0,)
    axis: int | None = None

    @property
    def is_fixed(self) -> bool:
        return dtypes.fixed_bits(self.dtype) is not None

    @property
    def frac(self) -> int | None:
        """FL of a fixed-point format (None for affine)."""
        bits = dtypes.fixed_bits(self.dtype)
        return None if bits is None else bits[1]

    @property
    def clamped(self) -> bool:
        """True when the storage dtype's range is wider than [qmin, qmax]."""
        info = np.iinfo(dtypes.to_numpy(self.dtype))
        return (int(info.min), int(info.max)) != (self.qmin, self.qmax)

    def quant_params(self) -> QuantParams | None:
        """The IR's QuantParams for this format (fixed point needs none: its scale is in the dtype)."""
        if self.is_fixed:
            return None
        return QuantParams(tuple(float(s) for s in self.scale), tuple(int(z) for z in self.zero_point), self.axis)

    def ir_type(self, shape: tuple[int, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype, None, self.quant_params())

    def _params(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        return broadcast_params(self.scale, self.zero_point, self.axis, ndim)

    def quantize(self, real: np.ndarray) -> np.ndarray:
        """Reals to stored integers (round half to even, saturate to [qmin, qmax])."""
        real = np.asarray(real, np.float64)
        scale, zp = self._params(real.ndim)
        q = np.clip(np.rint(real / scale) + zp, self.qmin, self.qmax)
        return q.astype(dtypes.to_numpy(self.dtype))

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Stored integers to the reals they mean (float64)."""
        scale, zp = self._params(np.ndim(q))
        return (np.asarray(q, np.float64) - zp) * scale

    def fake(self, real: np.ndarray) -> np.ndarray:
        """quantize then dequantize: the value the format actually represents."""
        return self.dequantize(self.quantize(real))

    def real_bounds(self) -> tuple[float, float]:
        """The smallest and largest representable reals (per-tensor formats)."""
        lo, hi = self.dequantize(np.array([self.qmin, self.qmax]))
        return float(lo), float(hi)


def fixed_format(bits: int, frac: int) -> QFormat:
    """Dynamic fixed point with `bits` total and `frac` fractional bits, in the narrowest fx storage."""
    storage = next((s for s in (8, 16, 32) if s >= bits and s >= frac), None)
    if storage is None or frac < 0:
        raise LpdcError(f"fixed point [{bits - frac}.{frac}] does not fit the IR's fx8/fx16/fx32 storage")
    return QFormat(dtypes.fixed(storage, frac), bits, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, (2.0 ** -frac,))


def affine_range_format(lo: float, hi: float, bits: int) -> QFormat:
    """Per-tensor asymmetric format covering [lo, hi] (always including 0, so zero padding is exact).

    Up to 8 bits the storage is u8 with q in [0, 2**W - 1]; wider formats use i16 (signed storage,
    the zero point shifts the range).
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    dtype, qmin, qmax = ("u8", 0, 2 ** bits - 1) if bits <= 8 else ("i16", -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    scale = max(scale, np.finfo(np.float32).tiny)
    zp = int(np.clip(np.rint(qmin - lo / scale), qmin, qmax))
    return QFormat(dtype, bits, qmin, qmax, (float(scale),), (zp,))


def symmetric_format(w: np.ndarray, bits: int, axis: int | None) -> QFormat:
    """Symmetric signed format for weights: q in [-(2**(W-1) - 1), 2**(W-1) - 1], zero point 0,
    one scale per slice along `axis` (per channel) or one for the tensor."""
    qmax = 2 ** (bits - 1) - 1
    w = np.asarray(w, np.float64)
    if axis is None:
        absmax = np.array([np.max(np.abs(w)) if w.size else 0.0])
    else:
        absmax = np.max(np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)), axis=1)
    # An all-zero channel still needs a positive scale; any value represents it exactly.
    scale = np.where(absmax > 0, absmax / qmax, 1.0)
    dtype = "i8" if bits <= 8 else "i16" if bits <= 16 else "i32"
    return QFormat(dtype, bits, -qmax, qmax, tuple(float(s) for s in scale), (0,) * len(scale), axis)


def accumulator_format(x: QFormat, w: QFormat) -> QFormat:
    """The int32 format of x*w products: scale s_x * s_w (per output channel when w is), zero point 0."""
    scale = tuple(float(x.scale[0] * s) for s in w.scale)
    axis = w.axis if len(scale) > 1 else None
    return QFormat("i32", 32, -(2 ** 31), 2 ** 31 - 1, scale, (0,) * len(scale), axis)
