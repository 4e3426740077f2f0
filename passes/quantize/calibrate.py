"""Calibration: run sample inputs through the reference interpreter and record each value's range.

Life cycle (as ONNX Runtime's calibrators): `observe` every node's outputs through the executable's
observer hook, then ask `Calibration.range(name, method)` for
    minmax      the smallest and largest value seen
    ema         per-batch min/max smoothed by a moving average (new = old + c * (batch - old))
    percentile  |x| clipped at the p-th percentile of a histogram of |x|
    entropy     |x| clipped where KL(P || Q) is least (TensorRT)
`samples(name)` gives a bounded random subsample of the raw values, which the fixed-point
[IL.FL] search uses to measure rounding error on real activations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import LpdcError
from ...ir import Graph, Node, dtypes
from .histogram import AbsHistogram

METHODS = ("minmax", "ema", "percentile", "entropy")
SAMPLE_CAP = 16384  # raw values kept per tensor for the fixed-point search


@dataclass
class ValueStats:
    """Running statistics of one value over the calibration runs."""

    lo: float = np.inf
    hi: float = -np.inf
    ema_lo: float | None = None
    ema_hi: float | None = None
    hist: AbsHistogram = field(default_factory=AbsHistogram)
    samples: list[np.ndarray] = field(default_factory=list)

    def update(self, x: np.ndarray, momentum: float, rng: np.random.Generator) -> None:
        x = np.asarray(x, np.float64)
        if x.size == 0:
            return
        lo, hi = float(np.min(x)), float(np.max(x))
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        self.ema_lo = lo if self.ema_lo is None else self.ema_lo + momentum * (lo - self.ema_lo)
        self.ema_hi = hi if self.ema_hi is None else self.ema_hi + momentum * (hi - self.ema_hi)
        self.hist.add(x)
        flat = x.ravel()
        take = min(flat.size, SAMPLE_CAP)
        self.samples.append(flat if take == flat.size else rng.choice(flat, take, replace=False))


class Calibration:
    """Ranges and samples of the observed values, by value name."""

    def __init__(self, names: Iterable[str] | None = None, momentum: float = 0.01, seed: int = 0) -> None:
        self.names = None if names is None else set(names)
        self.momentum = momentum
        self.stats: dict[str, ValueStats] = {}
        self._rng = np.random.default_rng(seed)

    def record(self, name: str, x: np.ndarray) -> None:
        if self.names is not None and name not in self.names:
            return
        if np.asarray(x).dtype.kind != "f":
            return
        self.stats.setdefault(name, ValueStats()).update(x, self.momentum, self._rng)

    def observe(self, node: Node, outputs: list[np.ndarray]) -> None:
        """The observer hook: `Executable.run(inputs, observer=calibration.observe)`."""
        for v, arr in zip(node.outputs, outputs, strict=True):
            if node.op != "const":
                self.record(v.name, arr)

    def __contains__(self, name: str) -> bool:
        return name in self.stats

    def _get(self, name: str) -> ValueStats:
        if name not in self.stats:
            raise LpdcError(f"value %{name} was not observed during calibration", where="quantize")
        return self.stats[name]

    def range(self, name: str, method: str = "minmax", percentile: float = 99.99,
              bits: int = 8) -> tuple[float, float]:
        """(lo, hi) of value `name` by `method` (see the module docstring); `bits` sets the entropy
        method's number of levels (2**bits for non-negative values, 2**(bits-1) per sign otherwise)."""
        s = self._get(name)
        levels = 2 ** bits if s.lo >= 0 else 2 ** (bits - 1)
        if method == "minmax":
            return s.lo, s.hi
        if method == "ema":
            return float(s.ema_lo), float(s.ema_hi)
        if method == "percentile":
            t = s.hist.percentile(percentile)
        elif method == "entropy":
            t = s.hist.entropy_threshold(levels)
        else:
            raise LpdcError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
        return max(s.lo, -t), min(s.hi, t)

    def samples(self, name: str) -> np.ndarray:
        """A bounded random subsample of every value `name` took."""
        s = self._get(name)
        data = np.concatenate(s.samples)
        if data.size > SAMPLE_CAP:
            data = np.random.default_rng(0).choice(data, SAMPLE_CAP, replace=False)
        return data


def check_calibration(graph: Graph, calibration: Sequence[Mapping[str, np.ndarray]] | Mapping[str, np.ndarray]
                      ) -> list[dict[str, np.ndarray]]:
    """The calibration samples as a list of feeds, each checked against the graph's inputs."""
    feeds = [calibration] if isinstance(calibration, Mapping) else calibration
    if isinstance(feeds, np.ndarray) or not isinstance(feeds, Sequence) or len(feeds) == 0:
        raise LpdcError("calibration must be a non-empty list of {input_name: array} dicts", where="quantize")
    out = []
    for i, feed in enumerate(feeds):
        if not isinstance(feed, Mapping):
            raise LpdcError(f"calibration sample {i} is a {type(feed).__name__}, not an {{input: array}} dict",
                            where="quantize")
        checked = {}
        for v in graph.inputs:
            if v.name not in feed:
                raise LpdcError(f"calibration sample {i} lacks input %{v.name}", where="quantize")
            arr = np.asarray(feed[v.name])
            if arr.shape != v.type.shape or arr.dtype.kind not in "fiu":
                raise LpdcError(f"calibration sample {i}: input %{v.name} has shape {list(arr.shape)} "
                                f"({arr.dtype}), expected {list(v.type.shape)} ({v.type.dtype})", where="quantize")
            want = dtypes.to_numpy(v.type.dtype)
            checked[v.name] = arr if arr.dtype == want else arr.astype(want)
        extra = sorted(set(feed) - {v.name for v in graph.inputs})
        if extra:
            raise LpdcError(f"calibration sample {i} names unknown input {extra[0]!r}", where="quantize")
        out.append(checked)
    return out


def calibrate(graph: Graph, calibration, names: Iterable[str] | None = None, momentum: float = 0.01) -> Calibration:
    """Run every calibration feed through `graph` (NumPy reference) and collect value statistics."""
    from ...backends.numpy import compile_numpy

    feeds = check_calibration(graph, calibration)
    cal = Calibration(names, momentum)
    exe = compile_numpy(graph)
    for feed in feeds:
        for name, arr in feed.items():
            cal.record(name, arr)
        exe.run(feed, observer=cal.observe)
    return cal
