"""Per-layer statistics that give each knob's thresholds a search scale (quantiles on sample data).

A threshold is searched as a *level* s in [0, 1]: the s-quantile of the quantity the knob compares,
measured on sample inputs with every knob off. Level 0 is the most cautious setting that still runs
the knob, level 1 the most aggressive; in between, the fraction of neurons (or maps) a knob touches
grows with s, which is what makes binary search on accuracy meaningful.
  SPET: the partial sums (bias + the largest-|w| part of the inputs) of every neuron.
  SDSS: the max and the range (max - min) of each non-sampled output's computed neighbours.
  SFMA: the variance of every input feature map of every image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...backends.numpy import compile_numpy
from ...backends.numpy.approx.layers import conv_operands, fc_operands
from ...backends.numpy.approx.sdss import sampling_plan
from ...ir import Graph, Node

SDSS_PERIOD = 2  # the seed's SP, "chosen to be 2 across all experiments"


@dataclass(frozen=True)
class LayerStats:
    """Sorted samples of what each knob of one layer compares against its thresholds."""

    spet_partials: dict[float, np.ndarray]  # by SPET fraction (prediction interval)
    sdss_max: np.ndarray | None
    sdss_range: np.ndarray | None
    sfma_variance: np.ndarray | None


def quantile(sorted_samples: np.ndarray, level: float) -> float:
    """The `level`-quantile (lower interpolation: always an observed value)."""
    if sorted_samples.size == 0:
        return 0.0
    i = min(int(math.floor(level * (sorted_samples.size - 1) + 1e-9)), sorted_samples.size - 1)
    return float(sorted_samples[max(i, 0)])


def collect(graph: Graph, feed: dict[str, np.ndarray], layers: list[str],
            spet_fractions: tuple[float, ...] = (0.5,)) -> dict[str, LayerStats]:
    """Run the reference once on `feed` and measure each layer's knob quantities."""
    values: dict[str, np.ndarray] = dict(feed)

    def observe(node: Node, results: list[np.ndarray]) -> None:
        for v, r in zip(node.outputs, results, strict=True):
            values[v.name] = r

    compile_numpy(graph).run(feed, observer=observe)
    nodes = {n.name: n for n in graph.nodes}
    out = {}
    for name in layers:
        node = nodes[name]
        ins = [None if v is None else values.get(v.name, graph.const_data(v)) for v in node.inputs]
        out[name] = _layer_stats(node, ins, values[node.outputs[0].name], spet_fractions)
    return out


def _layer_stats(node: Node, ins: list, output: np.ndarray, fractions: tuple[float, ...]) -> LayerStats:
    if node.op == "fully_connected":
        layer = fc_operands(node, ins)
        return LayerStats({f: _spet_partials(layer, f) for f in fractions}, None, None, None)
    x, layer, (oh, ow) = conv_operands(node, ins)
    plan = sampling_plan(oh, ow, SDSS_PERIOD)
    y = np.asarray(output).reshape(x.shape[0], layer.w.shape[0], oh * ow)
    vals = y[:, :, plan.neighbours]
    top, bottom = vals.max(axis=-1), vals.min(axis=-1)
    return LayerStats({f: _spet_partials(layer, f) for f in fractions}, np.sort(top, axis=None),
                      np.sort(top - bottom, axis=None), np.sort(x.var(axis=(2, 3)), axis=None))


def _spet_partials(layer, fraction: float) -> np.ndarray:
    k = layer.w.shape[1]
    first = max(1, math.ceil(fraction * k))
    head = np.zeros_like(layer.w)
    rows = np.arange(layer.w.shape[0])[:, None]
    head[rows, layer.order[:, :first]] = layer.w[rows, layer.order[:, :first]]
    return np.sort(head @ layer.cols + layer.bias[:, None], axis=None)
