"""Winograd minimal filtering F(m x m, 3 x 3) (Lavin & Gray 2016), m = 2 and m = 4.

The padded input is cut into overlapping (m+2)x(m+2) tiles (stride m); each tile d becomes
V = B^T d B, each filter g becomes U = G g G^T (once, cached), the element-wise products are
summed over input channels as (m+2)^2 independent GEMMs M = U @ V, and each output tile is
Y = A^T M A. Multiplications per output drop from 9 to (m+2)^2/m^2 (4 and 2.25), at the price of
transform work and rounding error that grows with m (see tests/test_primitives.py for the bounds).
Applies to 3x3, stride 1, dilation 1, ungrouped convolutions.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .base import ConvSpec, Primitive, packed, register

# (B^T, G, A^T) for F(2x2, 3x3) and F(4x4, 3x3), interpolation points 0, +-1, (+-2), inf.
_MATRICES = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                 np.float64)),
}


def _applies(s: ConvSpec) -> bool:
    return (s.is_float and (s.kh, s.kw) == (3, 3) and s.stride == (1, 1) and s.dilation == (1, 1)
            and s.group == 1)


def _tiles(s: ConvSpec, m: int) -> tuple[int, int]:
    return -(-s.ho // m), -(-s.wo // m)


def _workspace(m: int):
    def fn(s: ConvSpec) -> int:
        th, tw = _tiles(s, m)
        a2, p = (m + 2) ** 2, s.n * th * tw
        return (a2 * p * (s.c + s.o) + s.n * s.c * (th * m + 2) * (tw * m + 2)) * s.itemsize
    return fn


def _flops(m: int):
    def fn(s: ConvSpec) -> float:
        th, tw = _tiles(s, m)
        a, p = m + 2, s.n * th * tw
        gemm = 2.0 * a * a * s.o * s.c * p
        transforms = p * s.c * 4 * a ** 3 + p * s.o * 2 * (a * a * m + a * m * m)
        return gemm + transforms
    return fn


def _traffic(m: int):
    ws = _workspace(m)

    def fn(s: ConvSpec) -> float:
        return s.in_bytes + 2 * ws(s) + s.out_bytes
    return fn


def _filters(w: np.ndarray, m: int, dtype: np.dtype) -> np.ndarray:
    """U = G g G^T for every (O, C) filter, as (a*a, O, C)."""
    _, g, _ = _MATRICES[m]
    a = m + 2
    u = g @ w.astype(np.float64) @ g.T  # (O, C, a, a)
    o, c = w.shape[:2]
    return np.ascontiguousarray(u.transpose(2, 3, 0, 1).reshape(a * a, o, c).astype(dtype))


def _kron(m: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The tile transforms as single matrices on flattened tiles: vec(B^T d B) = (B^T x B^T) vec(d)
    and vec(A^T M A) = (A^T x A^T) vec(M), so each transform is one GEMM instead of many tiny ones."""
    bt, _, at = _MATRICES[m]
    return np.kron(bt, bt).astype(dtype), np.kron(at, at).astype(dtype)


def _run(m: int):
    def run(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
        kb, ka = _kron(m, x.dtype)
        a = m + 2
        th, tw = _tiles(s, m)
        pt, pl, pb, pr = s.pad
        eh, ew = th * m + 2 - s.hp, tw * m + 2 - s.wp  # extra bottom/right padding to whole tiles
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + eh), (pl, pr + ew)))
        s0, s1, s2, s3 = xp.strides
        # tiles gathered channel-major, (C, N, th, tw, a, a) -> (C*P, a*a)
        d = as_strided(xp, (s.c, s.n, th, tw, a, a), (s1, s0, s2 * m, s3 * m, s2, s3), writeable=False)
        v = np.matmul(kb, d.reshape(-1, a * a).T).reshape(a * a, s.c, -1)  # (a*a, C, P)
        u = packed(w, ("winograd", m, x.dtype.str), lambda: _filters(w, m, x.dtype))
        mm = np.matmul(u, v)  # (a*a, O, P)
        y = np.matmul(ka, mm.reshape(a * a, -1)).reshape(m, m, s.o, s.n, th, tw)
        y = y.transpose(3, 2, 4, 0, 5, 1).reshape(s.n, s.o, th * m, tw * m)
        return np.ascontiguousarray(y[:, :, :s.ho, :s.wo])
    return run


WINOGRAD_2X2 = register(Primitive(
    "winograd_2x2", "conv", "winograd", "NCHW", "NCHW", applies=_applies, run=_run(2),
    workspace=_workspace(2), flops=_flops(2), traffic=_traffic(2), calls=lambda s: 8, efficiency=0.4,
    exact=False, doc="Winograd F(2x2,3x3): 16 GEMMs over 4x4 tiles (NCHW)"))

WINOGRAD_4X4 = register(Primitive(
    "winograd_4x4", "conv", "winograd", "NCHW", "NCHW", applies=_applies, run=_run(4),
    workspace=_workspace(4), flops=_flops(4), traffic=_traffic(4), calls=lambda s: 8, efficiency=0.4,
    exact=False, doc="Winograd F(4x4,3x3): 36 GEMMs over 6x6 tiles (NCHW)"))
