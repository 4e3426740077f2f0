"""im2col convolution through one BLAS matmul per batch of groups: the reference convolution.

Windows are taken as a strided view of the padded input (no Python loops over pixels), then
multiplied by the (groups, O/g, C/g*kh*kw) weight matrix. Groups and depthwise run as one batched
matmul; dilation and stride are view strides; padding may be asymmetric.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def pad_nchw(x: np.ndarray, pad: tuple[int, int, int, int], value: float = 0) -> np.ndarray:
    """Pad H and W by (top, left, bottom, right)."""
    pt, pl, pb, pr = pad
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def windows(xp: np.ndarray, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int],
            out_hw: tuple[int, int]) -> np.ndarray:
    """A read-only (N, C, kh, kw, Ho, Wo) view of every window of a padded NCHW array."""
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    return as_strided(xp, shape=(n, c, kh, kw, ho, wo),
                      strides=(s0, s1, s2 * dh, s3 * dw, s2 * sh, s3 * sw), writeable=False)


def conv2d_im2col(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pad: tuple[int, int, int, int],
                  dilation: tuple[int, int], group: int, acc_dtype: np.dtype | None = None) -> np.ndarray:
    """NCHW x OIHW -> NCHW convolution (no bias), accumulating in `acc_dtype` (default: x's dtype)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    acc = np.dtype(acc_dtype or x.dtype)
    xp = pad_nchw(x.astype(acc, copy=False), pad)
    ho = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = windows(xp, kh, kw, stride, dilation, (ho, wo)).reshape(n, group, cg * kh * kw, ho * wo)
    wm = w.astype(acc, copy=False).reshape(group, o // group, cg * kh * kw)
    out = np.matmul(wm[None], cols)  # (n, group, o/g, ho*wo)
    return out.reshape(n, o, ho, wo)
