"""SFMA (similarity-based feature map approximation): replace a whole input-map convolution by its mean.

For image n, input feature map c and output channel o, when var(x[n, c]) <= `sfma_variance` (the map
is nearly constant) and sum|w[o, c]| <= `sfma_significance` (the kernel matters little), the map's
contribution to every output of channel o is approximated by the seed's formula (2.1):
    sum_i w_i * x_i  ~=  mean(x[n, c]) * sum_i w[o, c]_i
which is exact for a constant map away from the zero-padded border. The approximated inputs are then
left out of the dot products and the approximations summed per (n, o) (`extra`).
"""

from __future__ import annotations

import numpy as np

from .counters import LayerCounts
from .knobs import KnobSettings
from .neurons import Sfma


def sfma_plan(x: np.ndarray, w: np.ndarray, cols: np.ndarray, knobs: KnobSettings, counts: LayerCounts) -> Sfma:
    """x NCHW, w OIHW (group 1), cols (C*kh*kw, N*H'*W') the layer's inputs -> the layer's SFMA decisions."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    mean, var = x.mean(axis=(2, 3)), x.var(axis=(2, 3))  # (N, C)
    significance = np.abs(w).sum(axis=(2, 3))  # (O, C): static, computed once per weights
    low_var = var <= knobs.sfma_variance
    low_sig = significance <= knobs.sfma_significance
    approx = low_var[:, None, :] & low_sig[None]  # (N, O, C)
    extra = np.einsum("noc,nc,oc->no", approx.astype(x.dtype), mean, w.sum(axis=(2, 3))).astype(x.dtype, copy=False)
    # Inputs ordered (c, i, j) like the im2col rows; rows ordered (image, position).
    keep_rows = np.repeat(~low_var.T, kh * kw, axis=0)  # (K, N)
    zeroed = (cols.reshape(cols.shape[0], n, -1) * keep_rows[:, :, None]).reshape(cols.shape)
    done = int(np.count_nonzero(approx))
    # Per (n, c): mean (hw adds, 1 multiply) and variance (hw subtracts, multiplies and adds, 1 multiply),
    # its threshold test (1); per (n, o, c): combining the two tests (1); per approximation: mean x sum (2).
    counts.overhead += n * c * (4 * h * wd + 3) + n * o * c + 2 * done
    counts.approximated_maps += done
    return Sfma(low_var, low_sig, extra, np.concatenate([cols, zeroed]), kh * kw)
