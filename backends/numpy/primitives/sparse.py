"""Sparse primitives for pruned weights (scipy.sparse CSR), convolution and fully-connected.

sparse_csr (conv, NCHW): the weights as a CSR matrix (O, C kh kw) times the im2col patch matrix
(SpGEMM with a dense right-hand side); only non-zero weights are multiplied.
spmv (fully-connected): CSR (M, K) times the input vector(s).
Both apply when at most half of the weights are non-zero; below that density the skipped
multiplications start to pay for the irregular access of the sparse format.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..im2col import pad_nchw, windows
from .base import ConvSpec, FCSpec, Primitive, packed, register

MAX_DENSITY = 0.5


def _conv_applies(s: ConvSpec) -> bool:
    return s.is_float and s.group == 1 and s.density <= MAX_DENSITY


def _lowered_bytes(s: ConvSpec) -> int:
    return s.n * s.c * s.kh * s.kw * s.ho * s.wo * s.itemsize


def _conv_flops(s: ConvSpec) -> float:
    return 2.0 * s.density * s.macs


def _conv_traffic(s: ConvSpec) -> float:
    return s.in_bytes + 2 * _lowered_bytes(s) + 2 * s.density * s.w_bytes + 2 * s.out_bytes


def _csr(w: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(w.reshape(w.shape[0], -1))


def _run_conv(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    csr = packed(w, "csr", lambda: _csr(w))
    view = windows(pad_nchw(x, s.pad), s.kh, s.kw, s.stride, s.dilation, (s.ho, s.wo))
    cols = view.transpose(1, 2, 3, 0, 4, 5).reshape(s.c * s.kh * s.kw, s.n * s.ho * s.wo)
    y = np.asarray(csr @ cols)  # (O, N*Ho*Wo)
    return np.ascontiguousarray(y.reshape(s.o, s.n, s.ho, s.wo).transpose(1, 0, 2, 3), dtype=x.dtype)


def _fc_applies(s: FCSpec) -> bool:
    return s.is_float and s.density <= MAX_DENSITY


def _run_spmv(x: np.ndarray, w: np.ndarray, s: FCSpec) -> np.ndarray:
    csr = packed(w, "csr", lambda: _csr(w))
    return np.ascontiguousarray(np.asarray(csr @ x.T).T, dtype=x.dtype)


SPARSE_CSR = register(Primitive(
    "sparse_csr", "conv", "sparse", "NCHW", "NCHW", applies=_conv_applies, run=_run_conv,
    workspace=_lowered_bytes, flops=_conv_flops, traffic=_conv_traffic, calls=lambda s: 3,
    efficiency=0.03, doc="CSR weights x im2col patches (pruned weights, NCHW)"))

SPMV = register(Primitive(
    "spmv", "fully_connected", "sparse", "NC", "NC", applies=_fc_applies, run=_run_spmv,
    flops=lambda s: 2.0 * s.density * s.macs,
    traffic=lambda s: (s.batch * (s.k + s.m) + 2 * s.density * s.m * s.k) * s.itemsize,
    efficiency=0.03, doc="CSR weights x input vector(s)"))
