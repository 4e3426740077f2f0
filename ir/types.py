"""Typed tensors: `TensorType` (shape, dtype, layout, quantization) and `QuantParams`.

Shapes are concrete and physical: a tensor whose layout is NHWC has shape [N, H, W, C].
`layout` is None for the default (row-major in the logical order, NCHW for 4-D activations).
Quantization lives in the type, never in naming conventions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import LpdcTypeError
from . import dtypes, limits

KNOWN_LAYOUTS = ("NCHW", "NHWC", "OIHW", "HWIO", "NC", "CN")


def is_blocked_layout(layout: str) -> bool:
    """True for blocked layouts such as NCHW8c (channel blocks of 8 innermost)."""
    return layout.startswith("NCHW") and layout.endswith("c") and layout[4:-1].isdigit()


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization: real = scale * (stored - zero_point), per tensor or per `axis`."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def __post_init__(self) -> None:
        if len(self.scale) == 0 or len(self.scale) != len(self.zero_point):
            raise LpdcTypeError(
                f"quantization needs as many scales as zero points (got {len(self.scale)} and "
                f"{len(self.zero_point)})"
            )
        if self.axis is None and len(self.scale) != 1:
            raise LpdcTypeError("per-tensor quantization takes one scale; give an axis for per-channel")
        if any(not math.isfinite(s) or s <= 0 for s in self.scale):
            raise LpdcTypeError(f"quantization scales must be finite and positive, got {self.scale[:4]}")


@dataclass(frozen=True)
class TensorType:
    """The static type of a value."""

    shape: tuple[int, ...]
    dtype: str = "f32"
    layout: str | None = None
    quant: QuantParams | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 0 for d in self.shape):
            raise LpdcTypeError(f"negative dimension in shape {list(self.shape)}")
        limits.check_elements(math.prod(self.shape), f"shape {list(self.shape)}")
        dtypes.check(self.dtype)
        if self.layout is not None and not _layout_ok(self.layout, len(self.shape)):
            raise LpdcTypeError(f"layout {self.layout!r} does not fit rank {len(self.shape)}")
        if self.quant is not None and self.quant.axis is not None:
            axis = self.quant.axis
            if not 0 <= axis < len(self.shape) or self.shape[axis] != len(self.quant.scale):
                raise LpdcTypeError(
                    f"per-channel quantization on axis {axis} needs {self._dim(axis)} scales, "
                    f"got {len(self.quant.scale)}"
                )

    def _dim(self, axis: int) -> str:
        return str(self.shape[axis]) if 0 <= axis < len(self.shape) else "?"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * dtypes.itemsize(self.dtype)

    @property
    def effective_layout(self) -> str | None:
        """The layout, with the 4-D default spelled out as NCHW."""
        if self.layout is None and self.rank == 4:
            return "NCHW"
        return self.layout

    def with_shape(self, shape: tuple[int, ...] | list[int]) -> TensorType:
        return TensorType(tuple(shape), self.dtype, self.layout, self.quant)

    def with_dtype(self, dtype: str, quant: QuantParams | None = None) -> TensorType:
        return TensorType(self.shape, dtype, self.layout, quant)

    def with_layout(self, layout: str | None, shape: tuple[int, ...] | None = None) -> TensorType:
        return TensorType(self.shape if shape is None else shape, self.dtype, layout, self.quant)


def _layout_ok(layout: str, rank: int) -> bool:
    if is_blocked_layout(layout):
        return rank == 5
    return len(layout) == rank and layout.isalpha() and len(set(layout)) == rank
