"""Tune the effort knobs layer by layer under an accuracy budget, by binary search (the seed's method).

    result = tune_effort(graph, x_val, y_val, budget=0.005)   # lose at most 0.5 points of top-1
    ApproxExecutable(graph, result.config)

Preconditions: a float graph whose first input takes images in batches of its declared batch size
and whose first output holds class scores; labelled data to measure top-1 accuracy on.
Order: conv layers first, then fully_connected (seed section 2.2.4); within a layer, the knobs in
the order given. Each (layer, knob) stage searches the knob's level in [0, 1] (stats.py maps it to
thresholds) for the most aggressive setting whose accuracy stays >= its target, keeping the knobs
already tuned. With `spread` the budget is released stage by stage (stage i of S may lose
budget * i / S), so early stages cannot spend it all; the last stage's target is base - budget.
Accuracy is assumed to fall with the level (monotone), as the seed assumes for binary search.
criterion="agreement" scores top-1 agreement with the exact model instead of accuracy (stricter:
a flip that happens to fix a wrong answer no longer pays for one that breaks a right one).
SPET's prediction interval is 0.5 unless `spet_fractions` offers several (the fewest operations win);
searching it over-fits the 300-image validation split here (bench/bench_effort.py shows it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ...backends.numpy.approx import ApproxExecutable, EffortConfig, KnobSettings, LayerCounts
from ...backends.numpy.approx.layers import DOT_OPS, check_support
from ...errors import LpdcError, LpdcUnsupportedError
from ...ir import Graph
from .stats import SDSS_PERIOD, LayerStats, collect, quantile

log = logging.getLogger(__name__)
KNOBS = ("spet", "sfma", "sdss")
Scorer = Callable[[EffortConfig], tuple[float, int]]  # config -> (score, operations)
CRITERIA = ("accuracy", "agreement")


@dataclass(frozen=True)
class TuneStep:
    """One stage: the level chosen (None: the knob stays off) and the score it leaves (top-1 accuracy,
    or agreement with the exact model under criterion="agreement")."""

    layer: str
    knob: str
    level: float | None
    accuracy: float
    target: float
    settings: str


@dataclass
class TuneResult:
    config: EffortConfig
    base_accuracy: float
    accuracy: float
    counts: LayerCounts
    steps: list[TuneStep] = field(default_factory=list)


def predict_top1(exe, x: np.ndarray) -> np.ndarray:
    """Arg-max class of every image, run in chunks of the graph's batch (the last one padded)."""
    first = exe.graph.inputs[0]
    batch = first.type.shape[0]
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        pad = batch - len(chunk)
        feed = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)]) if pad else chunk
        scores = exe.run({first.name: feed})[exe.graph.outputs[0].name]
        out.append(np.asarray(scores).reshape(batch, -1)[:len(chunk)].argmax(axis=1))
    return np.concatenate(out)


def bisect_max(feasible: Callable[[float], bool], iterations: int = 7) -> float | None:
    """The largest level in [0, 1] found feasible (None when 0 is not), assuming monotonicity."""
    if not feasible(0.0):
        return None
    if feasible(1.0):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    return lo


def settings_at(knob: str, level: float, stats: LayerStats, base: KnobSettings,
                spet_fraction: float = 0.5) -> KnobSettings:
    """`base` with one knob switched on at thresholds = the `level`-quantiles of its quantities."""
    if knob == "spet":
        return replace(base, spet_threshold=quantile(stats.spet_partials[spet_fraction], level),
                       spet_fraction=spet_fraction)
    if knob == "sdss":
        return replace(base, sdss_period=SDSS_PERIOD, sdss_max=quantile(stats.sdss_max, level),
                       sdss_delta=quantile(stats.sdss_range, level))
    if knob == "sfma":  # the significance threshold stays open: the variance test alone is searched
        return replace(base, sfma_variance=quantile(stats.sfma_variance, level), sfma_significance=math.inf)
    raise LpdcError(f"unknown knob {knob!r}; known: {', '.join(KNOBS)}", where="tune_effort")


def _stages(graph: Graph, layers: Sequence[str] | None, knobs: Sequence[str]) -> list[tuple[str, str]]:
    nodes = [n for n in graph.nodes if n.op in DOT_OPS and (layers is None or n.name in layers)]
    nodes.sort(key=lambda n: n.op != "conv")  # stable: conv layers in graph order, then fc
    stages = []
    for node in nodes:
        for knob in knobs:
            try:
                check_support(node, KnobSettings(**{"spet": {"spet_threshold": 0.0}, "sdss": {"sdss_period": 2},
                                                    "sfma": {"sfma_variance": 0.0}}[knob]))
            except LpdcUnsupportedError as e:
                log.info("tune_effort: %s skips %s (%s)", node.name, knob, e.message)
                continue
            stages.append((node.name, knob))
    return stages


def _search(run: Scorer, config: EffortConfig, layer: str, knob: str, stats: LayerStats,
            fractions: tuple[float, ...], target: float, iterations: int) -> tuple[KnobSettings, float] | None:
    """The most aggressive feasible setting of one knob of one layer, and its level (None: none is
    feasible); over several SPET intervals, the one leaving the fewest operations."""
    best: tuple[int, KnobSettings, float] | None = None
    current = config.get(layer, KnobSettings())
    for fraction in fractions:
        def with_level(level: float, fraction: float = fraction) -> EffortConfig:
            return EffortConfig({**config, layer: settings_at(knob, level, stats, current, fraction)})

        level = bisect_max(lambda lv, with_level=with_level: run(with_level(lv))[0] >= target, iterations)
        if level is not None:
            trial = with_level(level)
            ops = run(trial)[1]
            if best is None or ops < best[0]:
                best = (ops, trial[layer], level)
    return None if best is None else (best[1], best[2])


def tune_effort(graph: Graph, x: np.ndarray, y: np.ndarray, *, budget: float = 0.005,
                knobs: Sequence[str] = KNOBS, layers: Sequence[str] | None = None, iterations: int = 7,
                spread: bool = True, spet_fractions: Sequence[float] = (0.5,), criterion: str = "accuracy",
                progress: Callable[[TuneStep], None] | None = None) -> TuneResult:
    """Tune every applicable (layer, knob) on images `x` with labels `y`; see the module docstring.
    SPET is searched at each prediction interval in `spet_fractions`; the one leaving the fewest
    operations wins."""
    unknown = [k for k in knobs if k not in KNOBS]
    if unknown or len(x) != len(y) or len(x) == 0:
        raise LpdcError(f"unknown knobs {unknown}" if unknown else f"{len(x)} images but {len(y)} labels",
                        where="tune_effort")
    if criterion not in CRITERIA:
        raise LpdcError(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}", where="tune_effort")
    y = np.asarray(y)
    exact = predict_top1(ApproxExecutable(graph), x)
    reference = y if criterion == "accuracy" else exact

    def run(config: EffortConfig) -> tuple[float, int]:
        exe = ApproxExecutable(graph, config)
        return float(np.mean(predict_top1(exe, x) == reference)), exe.total().ops

    base = run(EffortConfig())[0]
    stages = _stages(graph, layers, knobs)
    batch = graph.inputs[0].type.shape[0]
    feed = x[:batch] if len(x) >= batch else np.concatenate([x, np.repeat(x[-1:], batch - len(x), axis=0)])
    stats = collect(graph, {graph.inputs[0].name: feed}, sorted({layer for layer, _ in stages}),
                    tuple(spet_fractions))
    config, steps = EffortConfig(), []
    for i, (layer, knob) in enumerate(stages):
        target = base - budget * ((i + 1) / len(stages) if spread else 1.0) - 1e-12
        fractions = tuple(spet_fractions) if knob == "spet" else (0.5,)
        found = _search(run, config, layer, knob, stats[layer], fractions, target, iterations)
        if found is not None:
            config[layer] = found[0]
        step = TuneStep(layer, knob, None if found is None else found[1], run(config)[0], target,
                        config.get(layer, KnobSettings()).describe())
        log.info("tune_effort: %s %s level %s -> score %.4f", layer, knob, step.level, step.accuracy)
        steps.append(step)
        if progress is not None:
            progress(step)
    exe = ApproxExecutable(graph, config)
    final = float(np.mean(predict_top1(exe, x) == y))
    return TuneResult(config, float(np.mean(exact == y)), final, exe.total(), steps)
