"""Sparse fully-connected kernels for pruned, constant weights (batch 1 and small batches).

Layout: sliced ELL. The N output rows are cut into slices of `kb` rows; every row keeps its
non-zero weights (value + column index), padded with (0.0, column 0) to L = the longest row, and
packed [N/kb, L, kb] so that slot l of the kb rows of a slice is one contiguous vector. Because
the weights are constants, L is known at build time and every loop bound is static: the compute
is a plain TE reduction over L, vectorised across the kb rows (a gather of x per slot), parallel
over slices, with the dense FC's fused epilogue (bias, residual, activation).

Unstructured (magnitude) pruning scatters the zeros, so row blocks (BSR r x 1) would be mostly
non-empty at 90% sparsity; the per-row ELL form stores only the real non-zeros plus the padding.
Selection uses the *effective* density N*L/(N*K), so a layer whose rows are very uneven (much
padding) stays dense. The gather is scalarised by TVM's codegen (16 lane loads + inserts a slot);
leaving the lane loop to LLVM gives vgatherdps, which was 1.1-1.3x faster at K=4096 but 1.4x
slower at K=25088 (x in L2) on Zen 5, so the TIR-vectorised form stays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import s_tir, te, topi

from . import compute as C

# Effective density (padded ELL slots / dense weights) below which the sparse kernel beats the
# dense one. Measured with bench/bench_tvm_sparse_fc.py (batch 1, 1 thread, medians of 9) on the
# shared 2-core AMD Zen 5 dev VM (mcpu znver5, AVX-512, kb = 16, uint16 columns), (K, N) =
# (4096, 4096) and (25088, 4096); dense/sparse speed-up by effective density: 0.41-0.43: 0.8-0.9x,
# 0.36-0.38: 0.9-1.1x, 0.31-0.32: 1.1-1.2x, 0.26-0.27: 0.8-1.6x (noisy), 0.21-0.22: 1.3-1.8x,
# 0.11-0.12: 2.6-3.9x. Break-even near 0.35; 0.3 leaves near-ties on the dense kernel.
MAX_SPARSE_DENSITY = 0.3

# Batches above this run dense: the gathers are paid per row of x while the dense GEMV reuses its
# weight block across rows (a guess, not measured: the benchmark times batch 1 only).
MAX_SPARSE_BATCH = 8


def ell_pack(w: np.ndarray, kb: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] -> (values, columns), both [N/kb, L, kb]; padding slots are (0.0, 0)."""
    n, k = w.shape
    nz = w != 0
    counts = nz.sum(axis=1)
    length = max(int(counts.max()) if n else 0, 1)
    vals = np.zeros((n, length), np.float32)
    cols = np.zeros((n, length), index_dtype(k))
    rows, cs = np.nonzero(nz)  # row-major: columns ascending within each row
    slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    vals[rows, slot] = w[rows, cs]
    cols[rows, slot] = cs
    return tuple(np.ascontiguousarray(a.reshape(n // kb, kb, length).transpose(0, 2, 1)) for a in (vals, cols))


def index_dtype(k: int) -> type:
    """Column index type: uint16 when K allows (6 instead of 8 bytes per non-zero: the kernel is
    bandwidth-bound like the dense GEMV, so index bytes are time), else int32."""
    return np.uint16 if k <= 1 << 16 else np.int32


def effective_density(w: np.ndarray) -> float:
    """Padded ELL slots over dense weights: what the sparse kernel actually reads and multiplies."""
    n, k = w.shape
    return float((w != 0).sum(axis=1).max()) / k if n and k else 1.0


def sparse_fully_connected(x_shape: tuple[int, ...], m: int, k: int, length: int, kb: int,
                           epi: dict[str, Any]) -> tuple[list[Any], Any]:
    """y[i, j] = sum_l vals[j/kb, l, j%kb] * x[i, cols[j/kb, l, j%kb]]; args x, vals, cols, epilogue."""
    n_out = epi["channels"]
    x = te.placeholder(x_shape, name="x")
    flat = x if len(x_shape) == 2 else topi.reshape(x, (m, k))
    vals = te.placeholder((n_out // kb, length, kb), name="vals")
    cols = te.placeholder((n_out // kb, length, kb), dtype=np.dtype(index_dtype(k)).name, name="cols")
    r = te.reduce_axis((0, length), "r")
    conv = te.compute(
        (m, n_out), lambda i, j: te.sum(vals[j // kb, r, j % kb] * flat[i, cols[j // kb, r, j % kb].astype("int32")],
                                 axis=r),
        name="conv")
    args, out = C._epilogue(conv, n_out, epi)
    return [x, vals, cols, *args, out], out


def schedule_sparse_fc(sch: s_tir.Schedule, kb: int, vec: int) -> None:
    """Parallel over kb-row slices; per slice the kb accumulators live in registers, the L slots
    run serially, the kb rows of each slot are one vector (values, columns contiguous; x gathered)."""
    from .schedules.x86_conv import schedule_fc

    schedule_fc(sch, kb, vec)  # same loop structure as the dense GEMV: only the loads differ
