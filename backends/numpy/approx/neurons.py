"""Evaluate chosen neurons of a dot-product layer, with SPET early termination and SFMA input masks.

A layer is seen as neurons y[r, o] = act(b[o] + extra[n(r), o] + sum_k cols[k, r] * w[o, k]), where a
row r is one (image, output position) pair (im2col columns for a conv, images for fully_connected).
`cols` is stored input-major (K, R) so that picking a subset of inputs copies whole contiguous rows.
Only the neurons asked for are computed, one output channel at a time (a gather and one BLAS
vector-matrix product each), so the work done tracks the MACs counted.

SPET (saturation prediction and early termination, for ReLU-like epilogues): each output channel's
inputs are ordered by |w| descending once; the first ceil(fraction * K) are summed with the bias
(and SFMA's approximated part); a neuron whose partial sum is below the threshold is predicted
saturated, outputs 0 and skips the rest of its inputs.
SFMA: the inputs of an (image, input map, output channel) that SFMA approximates are skipped (their
contribution is already in `extra`). They are read from a copy of the inputs with those maps zeroed
(`Sfma.stacked`) rather than masked one by one, and counted as skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..kernels.activation import apply_activation
from .counters import LayerCounts
from .knobs import KnobSettings

SATURATING = ("relu", "relu6")  # epilogues whose output is 0 for every negative pre-activation


@dataclass(frozen=True)
class Sfma:
    """SFMA's decisions for one layer run: map (n, c) feeds output channel o approximately when
    low_var[n, c] and low_sig[o, c]."""

    low_var: np.ndarray  # (N, C) bool
    low_sig: np.ndarray  # (O, C) bool
    extra: np.ndarray  # (N, O): sum of the approximated contributions
    stacked: np.ndarray  # (2K, R): the inputs, then the inputs with the low-variance maps zeroed
    taps: int  # inputs per map (kh * kw)


@dataclass
class DotLayer:
    """The operands of one layer run: inputs (K, R), weights (O, K), bias (O,), rows per image."""

    cols: np.ndarray
    w: np.ndarray
    bias: np.ndarray
    rows_per_image: int
    activation: str
    act_alpha: float
    act_beta: float
    sfma: Sfma | None = None
    order: np.ndarray = field(init=False)  # (O, K): input indices by |w| descending

    def __post_init__(self) -> None:
        # A stable sort keeps equal-|w| inputs in index order, so the split is deterministic.
        self.order = np.argsort(-np.abs(self.w), axis=1, kind="stable")


def evaluate(layer: DotLayer, rows: np.ndarray, outs: np.ndarray, knobs: KnobSettings,
             counts: LayerCounts) -> np.ndarray:
    """Post-activation values of the neurons (rows[j], outs[j]), in the order given."""
    values = np.empty(len(rows), layer.cols.dtype)
    if len(rows) == 0:
        return values
    by_channel = np.argsort(outs, kind="stable")
    bounds = np.searchsorted(outs[by_channel], np.arange(layer.w.shape[0] + 1))
    for o in range(layer.w.shape[0]):
        sel = by_channel[bounds[o]:bounds[o + 1]]
        if len(sel):
            values[sel] = _channel(layer, o, rows[sel], knobs, counts)
    return values


def evaluate_all(layer: DotLayer, knobs: KnobSettings, counts: LayerCounts) -> np.ndarray:
    """Post-activation values of every neuron, (rows, output channels)."""
    return np.stack([_channel(layer, o, None, knobs, counts) for o in range(layer.w.shape[0])], axis=1)


def _partial(layer: DotLayer, o: int, rows: np.ndarray | None, idx: np.ndarray | None,
             counts: LayerCounts) -> tuple[np.ndarray, int]:
    """Sum over inputs `idx` (None: all) of cols[:, rows] (None: all rows) * w[o], SFMA-approximated
    inputs skipped; returns (sums, number of inputs skipped)."""
    w = layer.w[o] if idx is None else layer.w[o, idx]
    skipped = 0
    if layer.sfma is None:
        x = layer.cols if idx is None else layer.cols[idx]
    else:
        f = layer.sfma
        sel = np.arange(layer.w.shape[1]) if idx is None else idx
        maps = sel // f.taps
        approx = f.low_sig[o, maps]  # inputs of maps that channel o approximates when their variance is low
        x = f.stacked[sel + len(f.stacked) // 2 * approx]
        per_image = f.low_var.astype(np.int64) @ np.bincount(maps[approx], minlength=f.low_var.shape[1])
        skipped = int(per_image.sum() * layer.rows_per_image if rows is None else per_image[_images(layer, rows)].sum())
    # Two one-axis gathers (inputs, then rows) run several times faster in NumPy than one 2-D index.
    x = x if rows is None else x[:, rows]
    counts.macs += x.size - skipped
    return w @ x, skipped


def _images(layer: DotLayer, rows: np.ndarray | None) -> np.ndarray:
    return (np.arange(layer.cols.shape[1]) if rows is None else rows) // layer.rows_per_image


def _channel(layer: DotLayer, o: int, rows: np.ndarray | None, knobs: KnobSettings,
             counts: LayerCounts) -> np.ndarray:
    k = layer.w.shape[1]
    count = layer.cols.shape[1] if rows is None else len(rows)
    base = np.full(count, layer.bias[o], layer.cols.dtype)
    if layer.sfma is not None:
        base += layer.sfma.extra[_images(layer, rows), o]
    counts.dense_macs += count * k
    if not knobs.spet:
        sums, skipped = _partial(layer, o, rows, None, counts)
        counts.skipped_sfma += skipped
        return _act(layer, base + sums)
    first = max(1, math.ceil(knobs.spet_fraction * k))
    head, tail = layer.order[o, :first], layer.order[o, first:]
    sums, skipped = _partial(layer, o, rows, head, counts)
    pre = base + sums
    alive = ~(pre < knobs.spet_threshold)  # the single comparison SPET adds per neuron
    counts.overhead += count
    live = np.flatnonzero(alive)
    dead = count - len(live)
    counts.terminated += dead
    counts.skipped_spet += dead * len(tail)
    if len(tail) and len(live):
        rest, skipped_rest = _partial(layer, o, live if rows is None else rows[live], tail, counts)
        skipped += skipped_rest
        pre[live] += rest
    counts.skipped_sfma += skipped
    return np.where(alive, _act(layer, pre), np.zeros((), pre.dtype))


def _act(layer: DotLayer, y: np.ndarray) -> np.ndarray:
    return apply_activation(y, layer.activation, layer.act_alpha, layer.act_beta, None)
