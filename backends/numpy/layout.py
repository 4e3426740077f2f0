"""Moving 4-D activations between the layouts the IR knows (NCHW, NHWC, NCHW<k>c)."""

from __future__ import annotations

import numpy as np

from ...ir.types import is_blocked_layout


def to_nchw(x: np.ndarray, layout: str | None, channels: int = 0) -> np.ndarray:
    """View or copy `x` as NCHW (`channels` drops the zero padding of a blocked layout)."""
    if layout in (None, "NCHW"):
        return x
    if layout == "NHWC":
        return x.transpose(0, 3, 1, 2)
    assert is_blocked_layout(layout), layout
    n, cb, h, w, b = x.shape
    y = x.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w)
    return y[:, :channels] if channels else y


def from_nchw(x: np.ndarray, layout: str | None) -> np.ndarray:
    """Re-lay an NCHW array out as `layout` (contiguous)."""
    if layout in (None, "NCHW"):
        return np.ascontiguousarray(x)
    if layout == "NHWC":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    assert is_blocked_layout(layout), layout
    b = int(layout[4:-1])
    n, c, h, w = x.shape
    cb = -(-c // b)
    if cb * b != c:
        x = np.pad(x, ((0, 0), (0, cb * b - c), (0, 0), (0, 0)))
    return np.ascontiguousarray(x.reshape(n, cb, b, h, w).transpose(0, 1, 3, 4, 2))
