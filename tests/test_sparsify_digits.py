"""Pruning (+ quantization) on the trained digits CNN: accuracy stays sane, and a small layer-aware
(prune ratio, bits) search returns a Pareto front within its accuracy budget."""

from __future__ import annotations

import lpdc
import numpy as np
import pytest
from lpdc.passes.sparsify.layer_search import Evaluator, Point, format_points, pareto_front, search
from lpdc.tools.digits_cnn import accuracy, digits_split, train_digits_cnn


@pytest.fixture(scope="module")
def digits():
    graph, (x_test, y_test) = train_digits_cnn(seed=0)
    return graph, x_test, y_test, digits_split(0)


# One-shot pruning without fine-tuning of a net with only 8 first-layer filters (72 weights): the
# bounds are what this model keeps (seed 0): 20% costs nothing, 50% (global threshold) ~5 points.
@pytest.mark.parametrize("sparsity, scope, max_loss", [(0.2, "layer", 0.02), (0.5, "global", 0.07),
                                                       (0.5, "layer", 0.09)])
def test_magnitude_pruning_accuracy(digits, sparsity: float, scope: str, max_loss: float) -> None:
    graph, x, y, _ = digits
    base = accuracy(graph, x, y)
    pruned = accuracy(lpdc.prune(graph, sparsity, scope=scope), x, y)
    assert base > 0.9
    assert pruned >= base - max_loss, (sparsity, base, pruned)


def test_pruning_then_int8(digits) -> None:
    graph, x, y, split = digits
    base = accuracy(graph, x, y)
    q = lpdc.quantize(lpdc.prune(graph, 0.2), calibration=[{"x": split.x_train[:150]}], scheme="int8")
    assert accuracy(q, x, y) >= base - 0.03
    very = accuracy(lpdc.prune(graph, 0.95), x, y)
    assert very < base  # 95% without retraining must cost something


def test_channel_pruning_digits(digits) -> None:
    graph, x, y, _ = digits
    p = lpdc.prune(graph, 0.25, method="channel")
    conv1 = next(n for n in p.nodes if n.name == "conv1")
    assert conv1.inputs[1].type.shape[0] == 6  # 8 filters, a quarter removed
    assert accuracy(p, x, y) > 0.5


def test_pareto_front() -> None:
    pts = [Point(((0.0, 32),), 2.0, 100, 0.9), Point(((0.5, 32),), 1.0, 50, 0.9),
           Point(((0.5, 8),), 1.0, 20, 0.85), Point(((0.9, 8),), 3.0, 200, 0.5)]
    assert [p.config for p in pareto_front(pts)] == [((0.5, 8),), ((0.5, 32),)]


def test_layer_search_small(digits) -> None:
    graph, _, _, split = digits
    ev = Evaluator(graph, ("conv1", "conv2", "fc"), [{"x": split.x_train[:150]}],
                   lambda exe: accuracy(exe, split.x_val, split.y_val), {"x": split.x_val[:150]},
                   repeats=3, costs="model")
    result = search(ev, ratios=(0.0, 0.75), bits=(32, 8), budget=0.03, max_steps=2)
    assert result.best is not None and result.best.accuracy >= result.baseline.accuracy - 0.03
    feasible = [p for p in result.points if p.accuracy >= result.baseline.accuracy - 0.03]
    assert result.best.latency_s <= min(p.latency_s for p in feasible)
    front = result.pareto
    assert front and all(p in result.points for p in front)
    assert min(p.size_bytes for p in front) < result.baseline.size_bytes
    assert np.isfinite([p.latency_s for p in front]).all()
    assert "conv1" in format_points(result.layers, front)
