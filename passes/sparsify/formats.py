"""Storage size of pruned weights in each sparse format (what a deployed model would ship).

    dense: size * b                    csr: nnz * (b + i) + (rows + 1) * i
    coo:   nnz * (b + 2 i)             csc: nnz * (b + i) + (cols + 1) * i
    bsr:   blocks * (bh bw b + i) + (rows / bh + 1) * i
with b bytes per value (bits / 8) and i = 4 bytes per index (scipy's int32). Weights are viewed as
2-D (O, C kh kw) / (M, K). The formats themselves are built by the primitives from the dense array
(backends/numpy/primitives/sparse_ext.py `sparse_matrix`).
"""

from __future__ import annotations

import numpy as np

INDEX_BYTES = 4
FORMATS = ("dense", "csr", "csc", "coo", "bsr")


def as_matrix(w: np.ndarray) -> np.ndarray:
    """Weights as the 2-D matrix the sparse primitives multiply."""
    return w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)


def _bsr_blocks(m: np.ndarray, block: tuple[int, int]) -> int | None:
    bh, bw = block
    r, c = m.shape
    if r % bh or c % bw:
        return None
    nz = m.reshape(r // bh, bh, c // bw, bw) != 0
    return int(nz.any(axis=(1, 3)).sum())


def format_bytes(w: np.ndarray, bits: float = 32.0, block: tuple[int, int] = (4, 4)) -> dict[str, int]:
    """Bytes of `w` in every format (bsr absent when the shape does not tile into `block`)."""
    m = as_matrix(np.asarray(w))
    b = bits / 8.0
    nnz = int(np.count_nonzero(m))
    rows, cols = m.shape
    out = {"dense": int(np.ceil(m.size * b)),
           "csr": int(np.ceil(nnz * b)) + nnz * INDEX_BYTES + (rows + 1) * INDEX_BYTES,
           "csc": int(np.ceil(nnz * b)) + nnz * INDEX_BYTES + (cols + 1) * INDEX_BYTES,
           "coo": int(np.ceil(nnz * b)) + 2 * nnz * INDEX_BYTES}
    blocks = _bsr_blocks(m, block)
    if blocks is not None:
        out["bsr"] = int(np.ceil(blocks * block[0] * block[1] * b)) + blocks * INDEX_BYTES + \
            (rows // block[0] + 1) * INDEX_BYTES
    return out


def smallest_format(w: np.ndarray, bits: float = 32.0) -> tuple[str, int]:
    """(format, bytes) of the smallest representation of `w`."""
    sizes = format_bytes(w, bits)
    name = min(sizes, key=lambda k: (sizes[k], FORMATS.index(k)))
    return name, sizes[name]


def sparsity_of(w: np.ndarray) -> float:
    """Fraction of zero entries."""
    w = np.asarray(w)
    return 1.0 - float(np.count_nonzero(w)) / max(w.size, 1)
