"""Judging a quantized graph: top-1 accuracy (labels) or output SQNR (no labels), and memory.

    SQNR = 10 log10( sum(y_float**2) / sum((y_float - y_quant)**2) )  dB, over all evaluation outputs
`Evaluator.cost` turns a metric into something additive to compare with a budget: the accuracy drop
in points, or for SQNR the relative noise power 10**(-SQNR/10) (noise powers of independent
quantizers add, so per-variable costs from the layer analysis estimate a combination's cost).
Memory counts packed bits: W bits per fixed/affine value (+ a float32 scale per affine channel),
B bits per k-means index + the centroid table, 32 bits per float value; activations are a layer's
input feature map for one sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import LpdcError
from ...ir import Graph
from .apply import quantize_with
from .calibrate import Calibration
from .config import VARIABLES, QuantConfig, VarSpec, quantizable_layers


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `test` against `reference`, in dB (inf when equal)."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(test, np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def run_outputs(graph: Graph, feeds: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """The first output of `graph` over every feed, concatenated along the batch axis (float64)."""
    from ...backends.numpy import compile_numpy

    exe = compile_numpy(graph)
    name = graph.outputs[0].name
    return np.concatenate([np.asarray(exe.run(f)[name], np.float64) for f in feeds])


@dataclass
class Evaluator:
    """Scores quantization configurations of one float graph on fixed evaluation feeds."""

    graph: Graph
    feeds: Sequence[Mapping[str, np.ndarray]]
    calibration: Calibration | None
    labels: np.ndarray | None = None
    reference: np.ndarray = field(init=False)
    float_metric: float = field(init=False)
    evaluations: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.reference = run_outputs(self.graph, self.feeds)
        if self.labels is not None:
            self.labels = np.asarray(self.labels).ravel()
            if len(self.labels) > len(self.reference):
                raise LpdcError(f"{len(self.labels)} labels for {len(self.reference)} evaluation outputs",
                                where="quantize")
        self.float_metric = self.score(self.reference)

    @property
    def kind(self) -> str:
        return "accuracy" if self.labels is not None else "sqnr"

    def _correct(self, outputs: np.ndarray) -> np.ndarray:
        n = len(self.labels)
        return outputs[:n].reshape(n, -1).argmax(axis=1) == self.labels

    def score(self, outputs: np.ndarray) -> float:
        if self.labels is None:
            return sqnr_db(self.reference, outputs)
        return 100.0 * float(np.mean(self._correct(outputs)))

    def measure(self, config: QuantConfig) -> tuple[float, float]:
        """(metric, cost) of the graph quantized by `config`."""
        self.evaluations += 1
        out = run_outputs(quantize_with(self.graph, config, self.calibration), self.feeds)
        metric = self.score(out)
        return metric, self._cost(out, metric)

    def _cost(self, outputs: np.ndarray, metric: float) -> float:
        """Accuracy: an upper estimate of the points lost on unseen data. Only samples that float got
        right and quantization breaks count (lucky fixes do not pay for breakages), plus one standard
        error of that count (sqrt(n), Poisson): on a few hundred validation images a greedy search
        would otherwise accept many steps whose small losses the set cannot see.
        SQNR: relative noise power (0 = as good as float)."""
        if self.labels is not None:
            broken = int(np.sum(self._correct(self.reference) & ~self._correct(outputs)))
            return 100.0 * (broken + math.sqrt(broken)) / len(self.labels)
        return self.cost(metric)

    def cost(self, metric: float) -> float:
        """From a metric alone: accuracy drop in points, or relative noise power for SQNR."""
        if self.labels is not None:
            return max(self.float_metric - metric, 0.0)
        return 0.0 if metric == math.inf else 10 ** (-metric / 10)

    def budget_cost(self, budget: float) -> float:
        """The cost a budget allows: `budget` points of accuracy, or an SQNR floor of `budget` dB."""
        return budget if self.labels is not None else 10 ** (-budget / 10)


@dataclass(frozen=True)
class LayerSizes:
    """Element counts of one layer's variables (activations: the input, per sample)."""

    weights: int
    channels: int
    bias: int
    activations: int


def layer_sizes(graph: Graph) -> dict[str, LayerSizes]:
    out = {}
    names = set(quantizable_layers(graph))
    for n in graph.nodes:
        if n.name not in names:
            continue
        w = n.inputs[1].type
        b = n.inputs[2].type.size if len(n.inputs) > 2 and n.inputs[2] is not None else 0
        x = n.inputs[0].type
        out[n.name] = LayerSizes(w.size, w.shape[0], b, x.size // max(x.shape[0], 1) if x.rank else x.size)
    return out


def spec_bits(spec: VarSpec, count: int, channels: int = 1) -> int:
    """Packed storage of `count` values under `spec`, in bits."""
    if count == 0:
        return 0
    if spec.kind == "fixed":
        return spec.bits * count
    if spec.kind == "affine":
        return spec.bits * count + 32 * channels
    if spec.kind == "kmeans":
        return spec.bits * count + 2 ** spec.bits * spec.centroid_bits
    return 32 * count


def memory(graph: Graph, config: QuantConfig, sizes: dict[str, LayerSizes] | None = None) -> dict[str, int]:
    """Bits of weights, bias and activations of the quantizable layers under `config` (and float32)."""
    sizes = sizes or layer_sizes(graph)
    out = dict.fromkeys(("weights", "bias", "activations", "float_weights", "float_bias", "float_activations"), 0)
    for layer, s in sizes.items():
        counts = {"weights": (s.weights, s.channels), "bias": (s.bias, 1), "activations": (s.activations, 1)}
        for var in VARIABLES:
            count, ch = counts[var]
            out[var] += spec_bits(config.spec(layer, var), count, ch if var == "weights" else 0)
            out[f"float_{var}"] += 32 * count
    return out
