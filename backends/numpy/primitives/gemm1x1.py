"""1x1 convolution as a plain GEMM: no lowering at all, the input already is the matrix.

NCHW: out (O, HW) = W (O, C) @ x (C, HW) per image. NHWC: out (NHW, O) = x (NHW, C) @ W^T (C, O),
one GEMM for the whole batch. A stride subsamples the input first (a strided copy).
Applies to 1x1 kernels without padding or groups.
"""

from __future__ import annotations

import numpy as np

from .base import ConvSpec, Primitive, packed, register


def _applies(s: ConvSpec) -> bool:
    return s.is_float and s.kh == 1 and s.kw == 1 and s.group == 1 and not any(s.pad)


def _strided_bytes(s: ConvSpec) -> int:
    return s.n * s.c * s.ho * s.wo * s.itemsize if s.stride != (1, 1) else 0


def _traffic(s: ConvSpec) -> float:
    return s.in_bytes + 2 * _strided_bytes(s) + s.w_bytes + s.out_bytes


def _run_nchw(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    sh, sw = s.stride
    if (sh, sw) != (1, 1):
        x = x[:, :, ::sh, ::sw][:, :, :s.ho, :s.wo]
    xm = np.ascontiguousarray(x).reshape(s.n, s.c, s.ho * s.wo)
    wm = w.reshape(s.o, s.c)
    return np.matmul(wm, xm).reshape(s.n, s.o, s.ho, s.wo)


def _run_nhwc(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    sh, sw = s.stride
    if (sh, sw) != (1, 1):
        x = x[:, ::sh, ::sw, :][:, :s.ho, :s.wo, :]
    xm = np.ascontiguousarray(x).reshape(-1, s.c)
    wt = packed(w, "gemm1x1_t", lambda: np.ascontiguousarray(w.reshape(s.o, s.c).T))
    return (xm @ wt).reshape(s.n, s.ho, s.wo, s.o)


GEMM1X1 = register(Primitive(
    "gemm1x1", "conv", "gemm-1x1", "NCHW", "NCHW", applies=_applies, run=_run_nchw,
    workspace=_strided_bytes, traffic=_traffic, efficiency=0.7,
    doc="1x1 convolution as W @ X (NCHW), no lowering"))

GEMM1X1_NHWC = register(Primitive(
    "gemm1x1_nhwc", "conv", "gemm-1x1", "NHWC", "NHWC", applies=_applies, run=_run_nhwc,
    workspace=_strided_bytes, traffic=_traffic, efficiency=0.7,
    doc="1x1 convolution as X @ W^T (NHWC), one GEMM for the batch"))
