"""A growing histogram of |x| and the two range estimates read from it: percentile and entropy (KL).

Entropy calibration follows TensorRT: for each candidate threshold T (a bin edge), the reference
distribution P is the histogram up to T with every value beyond T piled into the last bin; Q is the
histogram up to T merged into `levels` quantization levels and spread back over the non-empty bins.
The T with the least KL(P || Q) wins: it balances clipping outliers against rounding the bulk.
Exact zeros are left out of the entropy search (they are exact in every format).
"""

from __future__ import annotations

import numpy as np


class AbsHistogram:
    """Counts of |x| over [0, hi] in `bins` equal bins; re-bins (approximately) when hi grows."""

    def __init__(self, bins: int = 2048) -> None:
        self.bins = bins
        self.counts = np.zeros(bins, np.float64)
        self.hi = 0.0
        self.zeros = 0  # exact zeros (also counted in bin 0)

    def add(self, x: np.ndarray) -> None:
        a = np.abs(np.asarray(x, np.float64).ravel())
        a = a[np.isfinite(a)]
        if a.size == 0:
            return
        self.zeros += int(np.count_nonzero(a == 0))
        top = float(a.max())
        if top > self.hi:
            self._grow(top)
        if self.hi > 0:
            self.counts += np.histogram(a, bins=self.bins, range=(0.0, self.hi))[0]
        else:  # every value so far is exactly zero
            self.counts[0] += a.size

    def _grow(self, hi: float) -> None:
        if self.hi > 0 and self.counts.any():
            centers = (np.arange(self.bins) + 0.5) * (self.hi / self.bins)
            self.counts = np.histogram(centers, bins=self.bins, range=(0.0, hi), weights=self.counts)[0]
        self.hi = hi

    @property
    def width(self) -> float:
        return self.hi / self.bins

    def percentile(self, p: float) -> float:
        """The value below which p percent of |x| lie (upper edge of the bin reaching p)."""
        total = self.counts.sum()
        if total == 0 or self.hi == 0:
            return 0.0
        cdf = np.cumsum(self.counts) / total
        i = int(np.searchsorted(cdf, min(p, 100.0) / 100.0 - 1e-12))
        return float(min(i + 1, self.bins) * self.width)

    def entropy_threshold(self, levels: int = 128, stride: int = 16) -> float:
        """TensorRT's KL-minimising clipping threshold for `levels` quantization levels."""
        if self.hi == 0 or self.counts.sum() <= self.zeros:
            return 0.0
        if levels >= self.bins:  # finer levels than bins: clipping cannot help
            return self.hi
        # Exact zeros (half of a ReLU's outputs) are exact in any format; left in, their spike in bin 0
        # would dominate KL and pull the threshold far into the bulk.
        counts = self.counts.copy()
        counts[0] -= self.zeros
        best_i, best_kl = self.bins, np.inf
        for i in list(range(levels, self.bins, stride)) + [self.bins]:
            kl = _kl_for_threshold(counts, i, levels)
            if kl < best_kl:
                best_i, best_kl = i, kl
        return float(best_i * self.width)


def _kl_for_threshold(counts: np.ndarray, i: int, levels: int) -> float:
    """KL(P || Q) for clipping at bin i (see the module docstring)."""
    ref = counts[:i]
    p = ref.copy()
    p[-1] += counts[i:].sum()
    nonzero = ref > 0
    starts = np.linspace(0, i, levels + 1).astype(np.int64)[:-1]
    sums = np.add.reduceat(ref, starts)
    nnz = np.add.reduceat(nonzero.astype(np.float64), starts)
    chunk = np.repeat(np.arange(levels), np.diff(np.append(starts, i)))
    q = np.where(nonzero, (sums / np.maximum(nnz, 1))[chunk], 0.0)
    p_sum, q_sum = p.sum(), q.sum()
    if p_sum == 0 or q_sum == 0:
        return np.inf
    p, q = p / p_sum, q / q_sum
    mask = p > 0
    # Where P has mass that Q lost (the pile of outliers), smooth Q instead of dividing by zero.
    q = np.where(mask & (q == 0), 1e-10, q)
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
