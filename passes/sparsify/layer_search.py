"""Layer-aware compression: choose a (prune ratio, bits) per layer that minimises measured latency
within an accuracy budget, and keep every configuration tried for the (latency, size, accuracy)
Pareto front (seed 003: compression applied per layer, where it pays).

Search (greedy descent on a lattice): start uncompressed; each step tries, for every layer, the
next prune ratio and the next lower bit width; among the candidates within the budget
(accuracy >= baseline - budget) move to the fastest, or, when none is >= 2% faster than the current
point, to the smallest; stop when no candidate is within budget or after `max_steps`.

Each configuration is built (magnitude pruning per layer, then fixed-point quantization of the
layers with bits < 32), compiled at -O3 (primitive selection: the sparse primitives where they
pay), timed end to end (median of `repeats` runs) and scored by the caller's `accuracy` function.
Size: per layer the smallest of dense and sparse storage at its bit width (formats.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...ir import Graph
from .formats import smallest_format
from .magnitude import magnitude_prune

Config = tuple[tuple[float, int], ...]  # per layer (prune ratio, bits); bits 32 = float


@dataclass(frozen=True)
class Point:
    """One evaluated configuration."""

    config: Config
    latency_s: float
    size_bytes: int
    accuracy: float


@dataclass
class SearchResult:
    layers: tuple[str, ...]
    baseline: Point
    points: list[Point] = field(default_factory=list)
    best: Point | None = None  # fastest within the budget

    @property
    def pareto(self) -> list[Point]:
        return pareto_front(self.points)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Points no other point beats on all of (latency, size, accuracy), sorted by latency."""
    def dominates(a: Point, b: Point) -> bool:
        ge = a.latency_s <= b.latency_s and a.size_bytes <= b.size_bytes and a.accuracy >= b.accuracy
        return ge and (a.latency_s < b.latency_s or a.size_bytes < b.size_bytes or a.accuracy > b.accuracy)
    front = {p.config: p for p in points if not any(dominates(q, p) for q in points)}
    return sorted(front.values(), key=lambda p: (p.latency_s, p.size_bytes))


def quant_config(layers: Sequence[str], config: Config) -> dict | None:
    """The per-layer fixed-point configuration for `config` (None when every layer stays float)."""
    specs = {}
    for name, (_, bits) in zip(layers, config, strict=True):
        if bits < 32:
            spec = {"kind": "fixed", "bits": bits}
            specs[name] = {"weights": spec, "activations": spec, "bias": {"kind": "fixed", "bits": max(bits, 16)}}
    if not specs:
        return None
    flt = {"kind": "float"}
    return {"format": "lpdc-quant-config-1", "default": {"weights": flt, "activations": flt, "bias": flt},
            "layers": specs}


def prune_layers(graph: Graph, layers: Sequence[str], config: Config) -> Graph:
    """`graph` with each layer magnitude-pruned to its ratio."""
    g = graph
    for name, (ratio, _) in zip(layers, config, strict=True):
        if ratio > 0:
            g = magnitude_prune(g, ratio, [name])
    return g


def build(pruned: Graph, layers: Sequence[str], config: Config, calibration: list[dict[str, np.ndarray]]) -> Graph:
    """The pruned graph quantized where bits < 32 (itself when every layer stays float)."""
    qc = quant_config(layers, config)
    if qc is None:
        return pruned
    from ..quantize import quantize

    return quantize(pruned, calibration, qc)


def size_of(pruned: Graph, layers: Sequence[str], config: Config) -> int:
    """Bytes of the layers' weights, each in its smallest format at its bit width."""
    total = 0
    for name, (_, bits) in zip(layers, config, strict=True):
        node = next(n for n in pruned.nodes if n.name == name)
        total += smallest_format(np.asarray(pruned.const_data(node.inputs[1])), bits)[1]
    return total


def latency(exe, feed: dict[str, np.ndarray], repeats: int) -> float:
    """Median seconds of `exe.run(feed)` after one warm-up run (process CPU time when the BLAS is
    single-threaded, as primitive selection measures: other processes' load is not counted)."""
    from ..select.measure import cpu_clock

    clock = cpu_clock()
    exe.run(feed)
    times = []
    for _ in range(repeats):
        t0 = clock()
        exe.run(feed)
        times.append(clock() - t0)
    return statistics.median(times)


@dataclass
class Evaluator:
    """Builds, compiles, times and scores configurations (memoised)."""

    graph: Graph
    layers: tuple[str, ...]
    calibration: list[dict[str, np.ndarray]]
    accuracy: Callable[[object], float]  # compiled executable -> accuracy
    feed: dict[str, np.ndarray]
    repeats: int = 7
    costs: str = "auto"
    seen: dict[Config, Point] = field(default_factory=dict)

    def __call__(self, config: Config) -> Point:
        if config not in self.seen:
            from ...api import compile
            from ..select.select_primitives import select_config

            pruned = prune_layers(self.graph, self.layers, config)
            g = build(pruned, self.layers, config, self.calibration)
            with select_config(costs=self.costs):
                exe = compile(g, target="numpy", opt_level=3)
            self.seen[config] = Point(config, latency(exe, self.feed, self.repeats),
                                      size_of(pruned, self.layers, config), self.accuracy(exe))
        return self.seen[config]


def _neighbours(config: Config, ratios: Sequence[float], bits: Sequence[int]) -> list[Config]:
    out = []
    for i, (r, b) in enumerate(config):
        ri, bi = ratios.index(r), bits.index(b)
        if ri + 1 < len(ratios):
            out.append(config[:i] + ((ratios[ri + 1], b),) + config[i + 1:])
        if bi + 1 < len(bits):
            out.append(config[:i] + ((r, bits[bi + 1]),) + config[i + 1:])
    return out


def search(evaluate: Evaluator, ratios: Sequence[float] = (0.0, 0.5, 0.75, 0.9),
           bits: Sequence[int] = (32, 8, 6), budget: float = 0.02, max_steps: int = 12) -> SearchResult:
    """Greedy layer-aware search (module docstring); `ratios` and `bits` in order of compression."""
    current: Config = tuple((ratios[0], bits[0]) for _ in evaluate.layers)
    base = evaluate(current)
    result = SearchResult(evaluate.layers, base, [base], base)
    floor = base.accuracy - budget
    for _ in range(max_steps):
        cands = [evaluate(c) for c in _neighbours(current, list(ratios), list(bits))]
        result.points.extend(cands)
        ok = [p for p in cands if p.accuracy >= floor]
        if not ok:
            break
        fastest = min(ok, key=lambda p: p.latency_s)
        here = evaluate(current)
        step = fastest if fastest.latency_s < 0.98 * here.latency_s else min(ok, key=lambda p: p.size_bytes)
        current = step.config
    feasible = [p for p in result.points if p.accuracy >= floor]
    result.best = min(feasible, key=lambda p: p.latency_s)
    result.points = list({p.config: p for p in result.points}.values())
    return result


def format_points(layers: Sequence[str], points: Sequence[Point]) -> str:
    """A markdown table of points: per-layer (ratio, bits), latency, size, accuracy."""
    head = "| " + " | ".join(layers) + " | latency ms | size KiB | accuracy |"
    lines = [head, "|" + "---|" * (len(layers) + 3)]
    for p in points:
        cells = " | ".join(f"{r:.0%}/{'f32' if b >= 32 else f'{b}b'}" for r, b in p.config)
        lines.append(f"| {cells} | {p.latency_s * 1e3:.3f} | {p.size_bytes / 1024:.2f} | {p.accuracy:.2%} |")
    return "\n".join(lines)
