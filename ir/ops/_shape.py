"""Shape arithmetic shared by the op families (sizes of convolutions, pools, broadcasts)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ...errors import LpdcTypeError
from ..types import TensorType, is_blocked_layout


def require(cond: bool, message: str) -> None:
    """Raise LpdcTypeError(message) unless `cond` holds."""
    if not cond:
        raise LpdcTypeError(message)


def present(t: TensorType | None, what: str) -> TensorType:
    require(t is not None, f"missing required input {what}")
    assert t is not None
    return t


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    """A non-negative axis, or an error when out of range."""
    require(-rank <= axis < max(rank, 1), f"{what} {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def nchw_axes(t: TensorType) -> tuple[int, int, int]:
    """(channel axis, first spatial axis, second spatial axis) of a 4-D activation."""
    require(t.rank == 4, f"expected a 4-D tensor, got shape {list(t.shape)}")
    layout = t.effective_layout
    if layout == "NHWC":
        return 3, 1, 2
    require(layout == "NCHW", f"layout {layout} is not supported here (NCHW or NHWC)")
    return 1, 2, 3


def blocked_layout(t: TensorType | None) -> str | None:
    """The layout of `t` if it is a blocked NCHW<k>c layout, else None."""
    return t.layout if t is not None and t.layout is not None and is_blocked_layout(t.layout) else None


def unblock(t: TensorType | None) -> TensorType | None:
    """A blocked (N, C/k, H, W, k) type seen as NCHW (N, C, H, W); other types unchanged."""
    if blocked_layout(t) is None:
        return t
    n, cb, h, w, k = t.shape
    return TensorType((n, cb * k, h, w), t.dtype, None, t.quant)


def reblock(t: TensorType, layout: str | None) -> TensorType:
    """An NCHW type moved to blocked `layout` (None: unchanged); channels must fill whole blocks."""
    if layout is None:
        return t
    k = int(layout[4:-1])
    n, c, h, w = t.shape
    require(c % k == 0, f"{c} channels do not fill whole blocks of {layout}")
    return TensorType((n, c // k, h, w, k), t.dtype, layout, t.quant)


def make_nchw_like(t: TensorType, n: int, c: int, h: int, w: int, dtype: str | None = None) -> TensorType:
    """A 4-D type in the same layout as `t`."""
    shape = (n, h, w, c) if t.effective_layout == "NHWC" else (n, c, h, w)
    return TensorType(shape, dtype or t.dtype, t.layout)


def window_out(size: int, k: int, stride: int, pad0: int, pad1: int, dilation: int = 1,
               ceil_mode: bool = False) -> int:
    """Output length of a sliding window (conv or pool), Caffe/ONNX rules for ceil mode.

    In ceil mode the last window must start inside the input or its leading padding, which is
    the clipping rule both Caffe and ONNX apply.
    """
    require(k >= 1 and stride >= 1 and dilation >= 1, f"kernel {k}, stride {stride}, dilation {dilation} must be >= 1")
    require(pad0 >= 0 and pad1 >= 0, f"negative padding ({pad0}, {pad1})")
    span = dilation * (k - 1) + 1
    room = size + pad0 + pad1 - span
    require(room >= 0,
            f"window of {span} (kernel {k}, dilation {dilation}) is larger than padded input {size + pad0 + pad1}")
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad0:
        out -= 1
    return out


def pads4(pad: Sequence[int]) -> tuple[int, int, int, int]:
    """Padding as (top, left, bottom, right) from 1, 2 or 4 numbers."""
    p = list(pad)
    if len(p) == 1:
        p = p * 4
    elif len(p) == 2:
        p = [p[0], p[1], p[0], p[1]]
    require(len(p) == 4, f"pad must have 1, 2 or 4 entries, got {list(pad)}")
    return p[0], p[1], p[2], p[3]


def pair(v: Sequence[int], what: str) -> tuple[int, int]:
    p = list(v)
    if len(p) == 1:
        p = p * 2
    require(len(p) == 2, f"{what} must have 1 or 2 entries, got {list(v)}")
    return p[0], p[1]


def broadcast(*shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes, with an error that shows them."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        require(len(dims) <= 1, f"shapes {[list(s) for s in shapes]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def same_dtype(ts: Sequence[TensorType], op: str) -> str:
    kinds = {t.dtype for t in ts}
    require(len(kinds) == 1, f"{op} inputs must share one dtype, got {sorted(kinds)}")
    return kinds.pop()


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)
