"""More sparse primitives for pruned weights: other storage formats for fully-connected layers and a
direct sparse convolution (scipy.sparse).

The IR keeps weights as dense arrays with zeros where they were pruned: that array is the source of
truth, and each primitive derives its own format from it once (the packed-weight cache), as an
inference library converts weights at load time. `sparse_matrix` builds any of the formats.

| name          | op   | format | computes                                                     |
|---------------|------|--------|--------------------------------------------------------------|
| spmv_csc      | fc   | CSC    | y = W x column by column (scatter): good for short, wide W   |
| spmv_coo      | fc   | COO    | y = W x over (row, col, value) triples                        |
| spmv_bsr      | fc   | BSR 4x4| y = W x over dense 4x4 blocks (block-pruned weights)         |
| sparse_direct | conv | CSR    | sum over kernel taps (i, j) of CSR W[:, :, i, j] x shifted input: |
|               |      |        | no im2col buffer (a 1x1 conv reads its input in place)       |

Like spmv and sparse_csr they apply at weight density <= 0.5; whether they pay is left to measured
costs in primitive selection (COO and BSR rarely do on unstructured sparsity).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..im2col import pad_nchw
from .base import ConvSpec, FCSpec, Primitive, packed, register
from .sparse import MAX_DENSITY

FORMATS = ("csr", "csc", "coo", "bsr")
BLOCK = (4, 4)


def sparse_matrix(w2: np.ndarray, fmt: str, block: tuple[int, int] = BLOCK) -> sp.spmatrix:
    """The 2-D dense matrix `w2` in sparse format `fmt` (csr, csc, coo or bsr with `block`)."""
    if fmt == "csr":
        return sp.csr_matrix(w2)
    if fmt == "csc":
        return sp.csc_matrix(w2)
    if fmt == "coo":
        return sp.coo_matrix(w2)
    if fmt == "bsr":
        return sp.bsr_matrix(w2, blocksize=block)
    raise ValueError(f"unknown sparse format {fmt!r}; known: {', '.join(FORMATS)}")


def _fc_applies(s: FCSpec) -> bool:
    return s.is_float and s.density <= MAX_DENSITY


def _fc_traffic(s: FCSpec) -> float:
    return (s.batch * (s.k + s.m) + 2 * s.density * s.m * s.k) * s.itemsize


def _fc_runner(fmt: str):
    def run(x: np.ndarray, w: np.ndarray, s: FCSpec) -> np.ndarray:
        mat = packed(w, fmt, lambda: sparse_matrix(w, fmt))
        if s.batch == 1:  # SpMV: a 1-D right-hand side takes scipy's matvec path
            return np.asarray(mat @ x[0], dtype=x.dtype)[None, :]
        return np.ascontiguousarray(np.asarray(mat @ x.T).T, dtype=x.dtype)  # SpMM
    return run


def _fc(name: str, fmt: str, efficiency: float, applies=_fc_applies) -> Primitive:
    return register(Primitive(
        name, "fully_connected", "sparse", "NC", "NC", applies=applies, run=_fc_runner(fmt),
        flops=lambda s: 2.0 * s.density * s.macs, traffic=_fc_traffic, efficiency=efficiency,
        doc=f"{fmt.upper()} weights x input vector(s)"))


SPMV_CSC = _fc("spmv_csc", "csc", 0.03)
SPMV_COO = _fc("spmv_coo", "coo", 0.01)
SPMV_BSR = _fc("spmv_bsr", "bsr", 0.02,
               applies=lambda s: _fc_applies(s) and s.m % BLOCK[0] == 0 and s.k % BLOCK[1] == 0)


# ---- direct sparse convolution ---------------------------------------------------------------------
def _taps(w: np.ndarray) -> list[tuple[int, int, sp.csr_matrix]]:
    """(i, j, CSR of W[:, :, i, j]) for every kernel tap with a non-zero weight."""
    out = []
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            m = sp.csr_matrix(w[:, :, i, j])
            if m.nnz:
                out.append((i, j, m))
    return out


def _run_direct(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    taps = packed(w, "taps", lambda: _taps(w))
    xp = pad_nchw(x, s.pad)
    (sh, sw), (dh, dw) = s.stride, s.dilation
    y = np.zeros((s.o, s.n * s.ho * s.wo), dtype=x.dtype)
    for i, j, m in taps:
        # the input pixels tap (i, j) multiplies, as a (C, N*Ho*Wo) matrix (a view when 1x1, N=1)
        sl = xp[:, :, i * dh:i * dh + sh * (s.ho - 1) + 1:sh, j * dw:j * dw + sw * (s.wo - 1) + 1:sw]
        cols = sl.reshape(s.c, -1) if s.n == 1 else sl.transpose(1, 0, 2, 3).reshape(s.c, -1)
        y += m @ cols
    return np.ascontiguousarray(y.reshape(s.o, s.n, s.ho, s.wo).transpose(1, 0, 2, 3))


def _direct_traffic(s: ConvSpec) -> float:
    taps = s.kh * s.kw
    return taps * (s.in_bytes + 2 * s.out_bytes) + 2 * s.density * s.w_bytes


SPARSE_DIRECT = register(Primitive(
    "sparse_direct", "conv", "sparse", "NCHW", "NCHW",
    applies=lambda s: s.is_float and s.group == 1 and s.density <= MAX_DENSITY, run=_run_direct,
    workspace=lambda s: s.c * s.n * s.ho * s.wo * s.itemsize, flops=lambda s: 2.0 * s.density * s.macs,
    traffic=_direct_traffic, calls=lambda s: 2 * s.kh * s.kw, efficiency=0.03,
    doc="sum over taps of CSR W[:,:,i,j] x shifted input (no im2col buffer)"))
