"""The kn2X family (Vasudevan, Anderson & Gregg 2017): a kh x kw convolution as the sum of kh*kw
shifted 1x1 convolutions.

One GEMM multiplies the (unreplicated, padded) input by all kh*kw weight slices at once, giving
kh*kw partial output planes at input resolution; a lifting step shift-adds them into the output.
kn2row (NCHW): Z (kh kw O, HpWp) = W (kh kw O, C) @ x (C, HpWp).
kn2col (NHWC): Z (HpWp, kh kw O) = x (HpWp, C) @ W (C, kh kw O).
No input replication, but the GEMM runs at input resolution (wasteful with strides) and the
workspace holds kh*kw output-sized planes. Groups are not supported.
"""

from __future__ import annotations

import numpy as np

from .base import ConvSpec, Primitive, packed, register
from .views import pad_nchw, pad_nhwc, tap_slice, taps


def _applies(s: ConvSpec) -> bool:
    return s.is_float and s.group == 1


def _planes_bytes(s: ConvSpec) -> int:
    return s.n * s.kh * s.kw * s.o * s.hp * s.wp * s.itemsize


def _flops(s: ConvSpec) -> float:
    return 2.0 * s.n * s.o * s.c * s.kh * s.kw * s.hp * s.wp + s.n * s.o * s.ho * s.wo * s.kh * s.kw


def _traffic(s: ConvSpec) -> float:
    return s.in_bytes + 2 * _planes_bytes(s) + s.w_bytes + s.kh * s.kw * s.out_bytes


def _calls(s: ConvSpec) -> int:
    return 1 + s.kh * s.kw


def _run_kn2row(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    xp = pad_nchw(x, s.pad)
    wk = packed(w, "kn2row", lambda: np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(-1, s.c)))
    z = np.matmul(wk, xp.reshape(s.n, s.c, s.hp * s.wp)).reshape(s.n, s.kh, s.kw, s.o, s.hp, s.wp)
    out = np.zeros((s.n, s.o, s.ho, s.wo), x.dtype)
    for i, j in taps(s):
        rows, cols = tap_slice(s, i, j)
        out += z[:, i, j, :, rows, cols]
    return out


def _run_kn2col(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    xp = pad_nhwc(x, s.pad)
    wk = packed(w, "kn2col", lambda: np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(s.c, -1)))
    z = (np.ascontiguousarray(xp).reshape(-1, s.c) @ wk).reshape(s.n, s.hp, s.wp, s.kh, s.kw, s.o)
    out = np.zeros((s.n, s.ho, s.wo, s.o), x.dtype)
    for i, j in taps(s):
        rows, cols = tap_slice(s, i, j)
        out += z[:, rows, cols, i, j, :]
    return out


KN2ROW = register(Primitive(
    "kn2row", "conv", "kn2", "NCHW", "NCHW", applies=_applies, run=_run_kn2row,
    workspace=_planes_bytes, flops=_flops, traffic=_traffic, calls=_calls, efficiency=0.5,
    doc="one GEMM of all kernel taps over the padded input, then shift-add (NCHW)"))

KN2COL = register(Primitive(
    "kn2col", "conv", "kn2", "NHWC", "NHWC", applies=_applies, run=_run_kn2col,
    workspace=_planes_bytes, flops=_flops, traffic=_traffic, calls=_calls, efficiency=0.5,
    doc="kn2row's NHWC twin: x @ W for all taps, then shift-add"))
