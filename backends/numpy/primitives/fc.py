"""Dense fully-connected primitives: GEMV for a single input vector, GEMM for a batch.

Inputs arrive flattened to (batch, K); weights are the IR's (M, K). gemv computes W @ x (the
weights streamed once, row by row); gemm computes X @ W^T for any batch.
"""

from __future__ import annotations

import numpy as np

from .base import FCSpec, Primitive, register


def _traffic(s: FCSpec) -> float:
    return (s.batch * (s.k + s.m) + s.m * s.k) * s.itemsize


def _run_gemv(x: np.ndarray, w: np.ndarray, s: FCSpec) -> np.ndarray:
    return (w @ x[0])[None, :]


def _run_gemm(x: np.ndarray, w: np.ndarray, s: FCSpec) -> np.ndarray:
    return x @ w.T


GEMV = register(Primitive(
    "gemv", "fully_connected", "blas", "NC", "NC", applies=lambda s: s.is_float and s.batch == 1,
    run=_run_gemv, traffic=_traffic, efficiency=0.1, doc="W @ x, one input vector"))

GEMM = register(Primitive(
    "gemm", "fully_connected", "blas", "NC", "NC", applies=lambda s: s.is_float, run=_run_gemm,
    traffic=_traffic, efficiency=0.5, doc="X @ W^T, any batch"))
