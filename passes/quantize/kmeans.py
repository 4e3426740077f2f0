"""k-means weight codebooks with fixed-point centroids (the seed's "K-means + [IL.FL]" scheme).

A weight tensor becomes 2**B centroids (found by 1-D k-means, then rounded to a fixed-point format
whose FL is searched like any other) and one B-bit index per weight:
    w[i] ~= centroid[index[i]]
In the IR the codebook is executable as it stands:
    %c  = const @L.w.centroids : fx8_F[K]      (fixed-point centroids)
    %cf = dequantize(%c) : f32[K]
    %i  = const @L.w.indices : u8[O,I,kh,kw]   (B-bit indices, stored one per byte)
    %w  = gather(%cf, %i) : f32[O,I,kh,kw]
Storage is counted packed: size*B + K*centroid_bits bits; the compression ratio is against float32.
Clustering is scipy's kmeans2 with k-means++ seeding, best of four seeded restarts: deterministic.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .fixed_point import fixed_for
from .schemes import QFormat

KMEANS_MAX_BITS = 8  # indices are stored as u8
FIT_CAP = 32768


@dataclass(frozen=True)
class Codebook:
    """Indices into fixed-point centroids; `dequantize()` gives the weights the codebook means."""

    indices: np.ndarray  # u8, the weight's shape
    centroids: np.ndarray  # stored fixed-point integers, shape [K]
    centroid_format: QFormat
    bits: int  # index bits B (K <= 2**B)

    def dequantize(self) -> np.ndarray:
        return self.centroid_format.dequantize(self.centroids)[self.indices.astype(np.int64)]

    @property
    def storage_bits(self) -> int:
        """Packed size: B bits per weight plus the centroid table."""
        return int(self.indices.size * self.bits + self.centroids.size * self.centroid_format.bits)

    @property
    def compression_ratio(self) -> float:
        """float32 size over packed codebook size."""
        return 32.0 * self.indices.size / max(self.storage_bits, 1)


def _kmeans_1d(x: np.ndarray, k: int, restarts: int = 4) -> np.ndarray:
    """Sorted centroids of 1-D k-means: scipy's kmeans2 with k-means++ seeds, the best of a few seeded
    restarts, fitted on at most FIT_CAP weights (large tensors are subsampled, then all assigned)."""
    from scipy.cluster.vq import kmeans2

    fit = x if x.size <= FIT_CAP else np.random.default_rng(0).choice(x, FIT_CAP, replace=False)
    best, best_err = None, np.inf
    with warnings.catch_warnings():  # an empty cluster only means fewer distinct values than k
        warnings.simplefilter("ignore")
        for seed in range(restarts):
            c, _ = kmeans2(fit[:, None], k, iter=30, minit="++", seed=seed)
            c = np.unique(c[:, 0])
            err = _sq_error(fit, c)
            if err < best_err:
                best, best_err = c, err
    return best


def _nearest(x: np.ndarray, sorted_centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for every value (centroids sorted ascending)."""
    edges = (sorted_centroids[1:] + sorted_centroids[:-1]) / 2
    return np.searchsorted(edges, x)


def _sq_error(x: np.ndarray, sorted_centroids: np.ndarray) -> float:
    return float(np.mean((x - sorted_centroids[_nearest(x, sorted_centroids)]) ** 2))


def kmeans_codebook(w: np.ndarray, bits: int, centroid_bits: int = 8, centroid_frac: int | None = None) -> Codebook:
    """Cluster `w` into at most 2**bits fixed-point centroids and index every weight."""
    x = np.asarray(w, np.float64).ravel()
    distinct = np.unique(x)
    k = min(2 ** bits, len(distinct))
    centroids = distinct if len(distinct) <= k else _kmeans_1d(x, k)
    fmt = fixed_for(centroids, centroid_bits, centroid_frac)
    stored = np.unique(fmt.quantize(centroids))  # rounding may merge centroids
    real = fmt.dequantize(stored)
    idx = _nearest(x, real).astype(np.uint8)  # re-assigned to the rounded centroids
    return Codebook(idx.reshape(np.shape(w)), stored, fmt, bits)
