"""SDSS (significance-driven selective sampling): compute a uniform sample of each output feature map,
interpolate the rest where the computed neighbourhood is insignificant.

Step 1 computes the outputs at rows and columns that are multiples of the period SP. Step 2 looks,
for every other output, at its computed neighbours: the corners of the sampling cell around it
(for SP = 2: the two outputs left and right, above and below, or the four diagonal ones; one side
only at the far border). When the neighbours' maximum is <= `sdss_max` and their range (max - min)
is <= `sdss_delta`, the output is their mean; otherwise it is computed. Values compared are
post-activation outputs, as in the seed (a ReLU map that is 0 all around stays 0 for free).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .counters import LayerCounts
from .knobs import KnobSettings

MAX_NEIGHBOURS = 4


@dataclass(frozen=True)
class SamplingPlan:
    """Flat output positions of one (H, W, SP): those sampled, the others and their neighbours."""

    sampled: np.ndarray  # (Ps,)
    others: np.ndarray  # (Pn,)
    neighbours: np.ndarray  # (Pn, 4) sampled positions, padded by repeating the first
    weights: np.ndarray  # (Pn, 4) 1/count for real neighbours, 0 for padding (the mean)
    count: np.ndarray  # (Pn,) number of real neighbours (1, 2 or 4)


def _cell(i: int, period: int, size: int) -> list[int]:
    """Sampled coordinates bracketing coordinate i (one when i is sampled or past the last sample)."""
    lo = (i // period) * period
    hi = lo + period
    return [lo] if i == lo or hi >= size else [lo, hi]


@lru_cache(maxsize=64)
def sampling_plan(height: int, width: int, period: int) -> SamplingPlan:
    sampled, others, nbs = [], [], []
    for i in range(height):
        for j in range(width):
            if i % period == 0 and j % period == 0:
                sampled.append(i * width + j)
                continue
            others.append(i * width + j)
            nbs.append([a * width + b for a in _cell(i, period, height) for b in _cell(j, period, width)])
    count = np.array([len(n) for n in nbs], np.int64)
    padded = np.array([n + [n[0]] * (MAX_NEIGHBOURS - len(n)) for n in nbs], np.int64).reshape(-1, MAX_NEIGHBOURS)
    weights = np.array([[1.0 / len(n)] * len(n) + [0.0] * (MAX_NEIGHBOURS - len(n)) for n in nbs]).reshape(
        -1, MAX_NEIGHBOURS)
    return SamplingPlan(np.array(sampled, np.int64), np.array(others, np.int64), padded, weights, count)


def interpolate(out: np.ndarray, plan: SamplingPlan, knobs: KnobSettings, counts: LayerCounts) -> np.ndarray:
    """Fill out[:, :, plan.others] where the neighbours allow it (out is (N, O, H*W) with the sampled
    positions computed); returns the (N, O, Pn) mask of outputs still to compute."""
    n, o, _ = out.shape
    vals = out[:, :, plan.neighbours]  # (N, O, Pn, 4)
    top, bottom = vals.max(axis=-1), vals.min(axis=-1)
    mean = (vals * plan.weights.astype(out.dtype)).sum(axis=-1)
    ok = (top <= knobs.sdss_max) & (top - bottom <= knobs.sdss_delta)
    out[:, :, plan.others] = np.where(ok, mean, 0)
    interpolated = int(np.count_nonzero(ok))
    # max and min over c neighbours (2c - 2 comparisons), the range (1), two threshold tests (2);
    # an interpolated output's mean costs c - 1 adds and one multiply.
    counts.overhead += n * o * int(np.sum(2 * plan.count + 1))
    counts.overhead += int(np.sum(ok * plan.count[None, None, :]))
    counts.interpolated += interpolated
    return ~ok
