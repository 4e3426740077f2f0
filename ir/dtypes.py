"""Element types of the IR and their NumPy storage.

Names are short and are what the textual IR prints: `f32 f16 i8 u8 i16 i32 i64 bool` (and the
wider unsigned `u16 u32 u64` that ONNX models may carry), and
dynamic fixed point `fxW_F` (W total bits stored as a signed integer, F fractional bits, so a
stored integer q means q * 2**-F; the seed framework's [IL.FL] format has IL = W - F).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import LpdcTypeError

_NUMPY = {
    "f32": np.float32,
    "f16": np.float16,
    "f64": np.float64,
    "i8": np.int8,
    "u8": np.uint8,
    "i16": np.int16,
    "i32": np.int32,
    "i64": np.int64,
    "bool": np.bool_,
    "u16": np.uint16,
    "u32": np.uint32,
    "u64": np.uint64,
}
_FIXED = re.compile(r"^fx(8|16|32)_(\d{1,2})$")
_FIXED_STORAGE = {8: np.int8, 16: np.int16, 32: np.int32}

FLOAT_DTYPES = frozenset({"f16", "f32", "f64"})
INT_DTYPES = frozenset({"i8", "u8", "i16", "i32", "i64", "u16", "u32", "u64"})


def is_valid(dtype: str) -> bool:
    """True for every dtype name the IR knows."""
    return dtype in _NUMPY or fixed_bits(dtype) is not None


def check(dtype: str, where: str | None = None) -> str:
    """Return `dtype` if valid, else raise an LpdcTypeError naming it."""
    if not isinstance(dtype, str) or not is_valid(dtype):
        raise LpdcTypeError(f"unknown dtype {dtype!r} (known: {', '.join(_NUMPY)}, fxW_F)", where=where)
    return dtype


def fixed_bits(dtype: str) -> tuple[int, int] | None:
    """(total bits, fractional bits) of a fixed-point dtype, else None."""
    m = _FIXED.match(dtype) if isinstance(dtype, str) else None
    if m is None:
        return None
    width, frac = int(m.group(1)), int(m.group(2))
    return (width, frac) if frac <= width else None


def fixed(width: int, frac: int) -> str:
    """The name of the fixed-point dtype with `width` bits, `frac` of them fractional."""
    name = f"fx{width}_{frac}"
    return check(name)


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    """True for plain integers (not fixed point, which stores integers but means reals)."""
    return dtype in INT_DTYPES


def to_numpy(dtype: str) -> np.dtype:
    """The NumPy dtype that stores values of `dtype`."""
    if dtype in _NUMPY:
        return np.dtype(_NUMPY[dtype])
    bits = fixed_bits(dtype)
    if bits is None:
        raise LpdcTypeError(f"unknown dtype {dtype!r}")
    return np.dtype(_FIXED_STORAGE[bits[0]])


def from_numpy(dtype: np.dtype | type) -> str:
    """The IR name of a NumPy dtype (fixed point cannot be told from storage alone)."""
    nd = np.dtype(dtype)
    for name, np_type in _NUMPY.items():
        if np.dtype(np_type) == nd:
            return name
    raise LpdcTypeError(f"NumPy dtype {nd} has no IR equivalent")


def itemsize(dtype: str) -> int:
    """Bytes per element as stored."""
    return to_numpy(dtype).itemsize
