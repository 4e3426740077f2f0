"""DRAM retention faults in stored weights: accuracy vs the probability that a stored bit is retained.

Seed 002, section 4.2.2: skip DRAM refresh for the weights, store them as 16-bit fixed point and
let cells that outlive their retention time lose their charge. Model (following the seed's
Algorithm 2, "weight & mask"): every constant float tensor of the graph (weights and biases) is
stored as W-bit two's-complement fixed point with one fractional length per tensor (the finest at
which its largest magnitude still fits), and each stored word is ANDed with a random mask, so a
fault only ever turns a 1 into a 0 (a charged cell leaking), never the reverse:
  model "bit"  (default): every stored bit survives independently with probability p_retain, so
                 each 1-bit is cleared with probability 1 - p_retain;
  model "word": the seed's single-fault variant: with probability 1 - p_retain a word loses exactly
                 one of its W bits, chosen uniformly (a 0 there stays 0, as the seed's value-
                 independent masks do).
A cleared sign bit turns a small negative weight into a large positive one, which is what makes
accuracy fall quickly. Scores: top-1 accuracy when labels are given, otherwise top-1 agreement
with the fault-free fixed-point model; each p_retain is averaged over `trials` random mask draws.
p_retain = 1.0 is the fault-free fixed-point model exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..backends.numpy import compile_numpy
from ..errors import LpdcError
from ..ir import Graph

MODELS = ("bit", "word")


@dataclass(frozen=True)
class FixedTensor:
    """Two's-complement codes (int64 holding W-bit values) and the fractional length."""

    codes: np.ndarray
    frac: int
    bits: int

    def values(self, codes: np.ndarray | None = None) -> np.ndarray:
        c = self.codes if codes is None else codes
        return (c.astype(np.float64) * 2.0 ** -self.frac).astype(np.float32)


def to_fixed(w: np.ndarray, bits: int = 16) -> FixedTensor:
    """Round to the finest W-bit fixed point at which max|w| does not saturate."""
    if not 2 <= bits <= 32:
        raise LpdcError(f"fixed-point width must be 2-32 bits, got {bits}", where="faults")
    w = np.asarray(w, np.float64)
    top = float(np.max(np.abs(w))) if w.size else 0.0
    frac = bits - 1 if top == 0 or not math.isfinite(top) else math.floor(math.log2((2 ** (bits - 1) - 1) / top))
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    codes = np.clip(np.round(np.nan_to_num(w) * 2.0 ** frac), lo, hi).astype(np.int64)
    return FixedTensor(codes, frac, bits)


def retention_faults(t: FixedTensor, p_retain: float, rng: np.random.Generator, model: str = "bit") -> np.ndarray:
    """The codes of `t` after one retention period: 1-bits cleared at random (see the module docstring)."""
    if not 0.0 <= p_retain <= 1.0:
        raise LpdcError(f"p_retain must be in [0, 1], got {p_retain}", where="faults")
    if model not in MODELS:
        raise LpdcError(f"unknown fault model {model!r}; known: {', '.join(MODELS)}", where="faults")
    width = np.int64((1 << t.bits) - 1)
    stored = t.codes & width  # the W-bit pattern in memory
    if model == "bit":
        lost = np.zeros_like(stored)
        for b in range(t.bits):
            lost |= (rng.random(stored.shape) >= p_retain).astype(np.int64) << b
    else:
        hit = (rng.random(stored.shape) >= p_retain).astype(np.int64)
        lost = hit << rng.integers(0, t.bits, stored.shape)
    kept = stored & ~lost
    return np.where(kept >= 1 << (t.bits - 1), kept - (1 << t.bits), kept)  # back to signed


def stored_tensors(graph: Graph, bits: int = 16) -> dict[str, FixedTensor]:
    """Every floating-point constant of `graph` (the weights kept in DRAM), as fixed point."""
    return {k: to_fixed(v, bits) for k, v in graph.params.items() if np.asarray(v).dtype.kind == "f"}


def with_params(graph: Graph, params: dict[str, np.ndarray]) -> Graph:
    g = graph.copy()
    for k, v in params.items():
        g.params[k] = v.astype(graph.params[k].dtype).reshape(graph.params[k].shape)
    return g


@dataclass(frozen=True)
class RetentionPoint:
    p_retain: float
    mean: float
    std: float
    low: float
    high: float
    trials: int


@dataclass(frozen=True)
class RetentionCurve:
    """Scores vs p_retain; `metric` is 'accuracy' or 'agreement' (with the fault-free fixed point)."""

    metric: str
    bits: int
    model: str
    float_score: float
    fixed_score: float
    points: list[RetentionPoint]


def top1(graph: Graph, x: np.ndarray) -> np.ndarray:
    from ..passes.effort import predict_top1

    return predict_top1(compile_numpy(graph), x)


def retention_curve(graph: Graph, p_values: Sequence[float], x: np.ndarray, y: np.ndarray | None = None, *,
                    trials: int = 3, seed: int = 0, bits: int = 16, model: str = "bit",
                    progress: Callable[[], None] | None = None) -> RetentionCurve:
    """Score `graph` with retention faults at each p_retain (see the module docstring)."""
    if trials < 1 or len(x) == 0 or (y is not None and len(y) != len(x)):
        raise LpdcError(f"need trials >= 1 and labelled images ({trials} trials, {len(x)} images, "
                        f"{'no' if y is None else len(y)} labels)", where="faults")
    stored = stored_tensors(graph, bits)
    fixed = with_params(graph, {k: t.values() for k, t in stored.items()})
    fixed_top1 = top1(fixed, x)
    target = np.asarray(y) if y is not None else fixed_top1

    def score(pred: np.ndarray) -> float:
        return float(np.mean(pred == target))

    rng = np.random.default_rng(seed)
    points = []
    for p in p_values:
        scores = []
        for _ in range(trials if p < 1.0 else 1):  # p = 1 draws no faults: one run is exact
            faulty = {k: t.values(retention_faults(t, p, rng, model)) for k, t in stored.items()}
            scores.append(score(top1(with_params(graph, faulty), x)))
        s = np.asarray(scores)
        points.append(RetentionPoint(float(p), float(s.mean()), float(s.std()), float(s.min()), float(s.max()),
                                     len(scores)))
        if progress is not None:
            progress()
    return RetentionCurve("accuracy" if y is not None else "agreement", bits, model,
                          score(top1(graph, x)), score(fixed_top1), points)


def parse_p_retain(spec: str) -> list[float]:
    """'0.9..1.0' (step 0.01), '0.9..1.0:0.02' or '0.9,0.95,1' -> sorted probabilities."""
    try:
        if ".." in spec:
            rng, _, step = spec.partition(":")
            lo, hi = (float(v) for v in rng.split(".."))
            d = float(step) if step else 0.01
            if d <= 0 or hi < lo:
                raise ValueError("empty range")
            values = [round(lo + i * d, 10) for i in range(int(math.floor((hi - lo) / d + 1e-9)) + 1)]
        else:
            values = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError as e:
        raise LpdcError(f"--p-retain takes LO..HI[:STEP] or a comma list, got {spec!r} ({e})") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise LpdcError(f"--p-retain values must lie in [0, 1], got {spec!r}")
    return sorted(set(values))


def format_curve(c: RetentionCurve) -> str:
    lines = [f"retention faults ({c.model} model, {c.bits}-bit fixed-point weights): top-1 {c.metric}; "
             f"float {c.float_score:.4f}, fault-free fixed point {c.fixed_score:.4f}",
             f"{'p_retain':>9}  {c.metric:>10}  {'std':>7}  {'min':>7}  {'max':>7}  trials"]
    lines += [f"{p.p_retain:9.3f}  {p.mean:10.4f}  {p.std:7.4f}  {p.low:7.4f}  {p.high:7.4f}  {p.trials:6d}"
              for p in c.points]
    return "\n".join(lines)


def plot_curve(c: RetentionCurve, path: str | os.PathLike[str]) -> None:
    """Score vs p_retain with the min-max band over trials and the fault-free fixed-point line."""
    from .plots import _new_figure, _save

    fig, (ax,) = _new_figure(1, 6.0)
    p = [q.p_retain for q in c.points]
    ax.plot(p, [q.mean for q in c.points], "o-", label=f"mean of trials ({c.model} model)")
    ax.fill_between(p, [q.low for q in c.points], [q.high for q in c.points], alpha=0.25, label="min-max")
    ax.axhline(c.fixed_score, color="gray", linestyle="--", label=f"fault-free {c.bits}-bit")
    ax.set_xlabel("p_retain (probability a stored bit is retained)")
    ax.set_ylabel(f"top-1 {c.metric}")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
