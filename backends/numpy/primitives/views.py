"""Padding and sliding-window views for the layouts primitives work in (NCHW helpers live in
backends/numpy/im2col.py; these are their NHWC and blocked NCHW<k>c counterparts)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..im2col import pad_nchw, windows
from .base import ConvSpec

__all__ = ["pad_nchw", "pad_nhwc", "pad_blocked", "windows", "windows_nhwc", "taps", "tap_slice"]


def pad_nhwc(x: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Zero-pad H and W of an NHWC array by (top, left, bottom, right)."""
    pt, pl, pb, pr = pad
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))


def pad_blocked(x: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Zero-pad H and W of an (N, C/b, H, W, b) array."""
    pt, pl, pb, pr = pad
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr), (0, 0)))


def windows_nhwc(xp: np.ndarray, s: ConvSpec) -> np.ndarray:
    """A read-only (N, Ho, Wo, kh, kw, C) view of every window of a padded NHWC array."""
    n, _, _, c = xp.shape
    s0, s1, s2, s3 = xp.strides
    (sh, sw), (dh, dw) = s.stride, s.dilation
    return as_strided(xp, shape=(n, s.ho, s.wo, s.kh, s.kw, c),
                      strides=(s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3), writeable=False)


def taps(s: ConvSpec) -> list[tuple[int, int]]:
    """Every (row, column) position of the kernel."""
    return [(i, j) for i in range(s.kh) for j in range(s.kw)]


def tap_slice(s: ConvSpec, i: int, j: int) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (i, j) reads, one per output pixel."""
    (sh, sw), (dh, dw) = s.stride, s.dilation
    r0, c0 = i * dh, j * dw
    return slice(r0, r0 + (s.ho - 1) * sh + 1, sh), slice(c0, c0 + (s.wo - 1) * sw + 1, sw)
