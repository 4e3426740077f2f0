"""The im2X family: lower the input to a patch matrix and do one GEMM.

im2col (NCHW): patches become columns, out (O, HoWo) = W (O, C kh kw) @ cols (C kh kw, HoWo); this
is the reference convolution (backends/numpy/im2col.py) and the default when no primitive is set.
im2row (NHWC): patches become rows, out (HoWo, O) = rows (HoWo, kh kw C) @ W' (kh kw C, O), so the
output comes out in NHWC with no transpose. Both replicate the input kh*kw times (workspace).
Groups run as one batched matmul.
"""

from __future__ import annotations

import numpy as np

from ..im2col import conv2d_im2col
from .base import ConvSpec, Primitive, packed, register
from .views import pad_nhwc, windows_nhwc


def _lowered_bytes(s: ConvSpec) -> int:
    return s.n * s.c * s.kh * s.kw * s.ho * s.wo * s.itemsize


def _padded_bytes(s: ConvSpec) -> int:
    return s.n * s.c * s.hp * s.wp * s.itemsize if any(s.pad) else 0


def _workspace(s: ConvSpec) -> int:
    return _lowered_bytes(s) + _padded_bytes(s)


def _traffic(s: ConvSpec) -> float:
    # read input, write + read the patch matrix, read weights, write output
    return s.in_bytes + 2 * _lowered_bytes(s) + _padded_bytes(s) + s.w_bytes + s.out_bytes


def _float(s: ConvSpec) -> bool:
    return s.is_float


def _run_im2col(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    return conv2d_im2col(x, w, s.stride, s.pad, s.dilation, s.group)


def _run_im2row(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    view = windows_nhwc(pad_nhwc(x, s.pad), s)  # (N, Ho, Wo, kh, kw, C)
    rows_n = s.n * s.ho * s.wo
    if s.group == 1:
        wm = packed(w, "im2row", lambda: np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, s.o)))
        y = view.reshape(rows_n, -1) @ wm
        return y.reshape(s.n, s.ho, s.wo, s.o)
    g, cg, og = s.group, s.cg, s.og
    rows = view.reshape(rows_n, s.kh, s.kw, g, cg).transpose(3, 0, 1, 2, 4).reshape(g, rows_n, -1)
    wm = packed(w, "im2row_g", lambda: np.ascontiguousarray(
        w.reshape(g, og, cg, s.kh, s.kw).transpose(0, 3, 4, 2, 1).reshape(g, -1, og)))
    y = np.matmul(rows, wm)  # (g, rows, og)
    return np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(s.n, s.ho, s.wo, s.o)


IM2COL = register(Primitive(
    "im2col", "conv", "gemm-lowering", "NCHW", "NCHW", applies=_float, run=_run_im2col,
    workspace=_workspace, traffic=_traffic, efficiency=0.55,
    doc="patch columns + one GEMM per batch of groups (NCHW); the reference convolution"))

IM2ROW = register(Primitive(
    "im2row", "conv", "gemm-lowering", "NHWC", "NHWC", applies=_float, run=_run_im2row,
    workspace=_workspace, traffic=_traffic, efficiency=0.55,
    doc="patch rows + one GEMM (NHWC in and out)"))
