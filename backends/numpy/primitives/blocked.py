"""Convolution in the blocked layout NCHW8c: (N, C/8, H, W, 8), channels split into blocks of 8
that sit innermost (the layout of oneDNN and TVM's x86 schedules, where a block fills a vector
register).

The windows of the blocked input are gathered as rows (N Ho Wo, C/8 kh kw 8) and multiplied by
the weights packed to (C/8 kh kw 8, O); the (N, Ho, Wo, O/8, 8) result is moved to
(N, O/8, Ho, Wo, 8). Applies when input and output channels are multiples of 8 (so no padding
channels exist) and there are no groups.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .base import ConvSpec, Primitive, packed, register
from .views import pad_blocked

BLOCK = 8
LAYOUT = f"NCHW{BLOCK}c"


def _applies(s: ConvSpec) -> bool:
    return s.is_float and s.group == 1 and s.c % BLOCK == 0 and s.o % BLOCK == 0


def _lowered_bytes(s: ConvSpec) -> int:
    return s.n * s.c * s.kh * s.kw * s.ho * s.wo * s.itemsize


def _traffic(s: ConvSpec) -> float:
    return s.in_bytes + 2 * _lowered_bytes(s) + s.w_bytes + 3 * s.out_bytes


def _pack(w: np.ndarray, s: ConvSpec) -> np.ndarray:
    cb = s.c // BLOCK
    wb = w.reshape(s.o, cb, BLOCK, s.kh, s.kw).transpose(1, 3, 4, 2, 0)  # (C/8, kh, kw, 8, O)
    return np.ascontiguousarray(wb.reshape(-1, s.o))


def _run(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    xp = pad_blocked(x, s.pad)  # (N, C/8, Hp, Wp, 8)
    n, cb = xp.shape[:2]
    s0, s1, s2, s3, s4 = xp.strides
    (sh, sw), (dh, dw) = s.stride, s.dilation
    view = as_strided(xp, (n, s.ho, s.wo, cb, s.kh, s.kw, BLOCK),
                      (s0, s2 * sh, s3 * sw, s1, s2 * dh, s3 * dw, s4), writeable=False)
    wm = packed(w, "blocked8c", lambda: _pack(w, s))
    y = view.reshape(n * s.ho * s.wo, -1) @ wm  # (N Ho Wo, O)
    y = y.reshape(n, s.ho, s.wo, s.o // BLOCK, BLOCK).transpose(0, 3, 1, 2, 4)
    return np.ascontiguousarray(y)


BLOCKED = register(Primitive(
    "im2row_8c", "conv", "blocked", LAYOUT, LAYOUT, applies=_applies, run=_run,
    workspace=_lowered_bytes, traffic=_traffic, efficiency=0.5,
    doc="im2row over the blocked NCHW8c layout, one GEMM"))
