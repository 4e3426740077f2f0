"""Phase 1 of the pipeline, layer analysis: quantize one layer's one variable at a time.

For every quantizable layer, every variable (weights, activations, bias) and every bit width, that
variable alone is quantized (its [IL.FL] searched for the least error, or its k-means codebook
built, or its affine range calibrated) while everything else stays float32, and the network is
scored (top-1 accuracy with labels, output SQNR without). The rows carry explicit specs (FL and
ranges filled in), so phase 2 and the configuration file reuse exactly what was measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...errors import LpdcError
from .config import VARIABLES, QuantConfig, VarSpec, quantizable_layers
from .fixed_point import best_frac
from .kmeans import KMEANS_MAX_BITS
from .metrics import Evaluator, layer_sizes, spec_bits
from .schemes import check_bits

DEFAULT_WIDTHS = (2, 3, 4, 5, 6, 8, 12, 16)
# The pipeline's quantization technique: the kind each variable gets (k-means is for weights only).
TECHNIQUES = {
    "fixed": {"weights": "fixed", "activations": "fixed", "bias": "fixed"},
    "kmeans": {"weights": "kmeans", "activations": "fixed", "bias": "fixed"},
    "affine": {"weights": "affine", "activations": "affine", "bias": "affine"},
}
Progress = Callable[[str], None] | None


@dataclass(frozen=True)
class SensitivityRow:
    """One measurement: `spec` applied to `variable` of `layer` alone."""

    layer: str
    variable: str
    spec: VarSpec
    metric: float
    cost: float
    memory_bits: int

    @property
    def bits(self) -> int:
        return self.spec.bits


def technique(scheme: str) -> str:
    """The technique a scheme name stands for: fixed (fixedN), kmeans (kmeansN), affine (int8/intN)."""
    s = scheme.strip().lower().rstrip("0123456789")
    name = {"fixed": "fixed", "kmeans": "kmeans", "int": "affine", "affine": "affine"}.get(s)
    if name is None:
        raise LpdcError(f"the pipeline explores fixed, kmeans or affine (int) schemes, not {scheme!r}",
                        where="quantize")
    return name


def widths_for(kind: str, variable: str, widths: Sequence[int]) -> list[int]:
    """The bit widths a variable is analysed at (k-means indices up to 8 bits; affine bias is int32)."""
    ws = sorted({check_bits(b, "sensitivity widths") for b in widths})
    if kind == "kmeans":
        ws = [b for b in ws if b <= KMEANS_MAX_BITS]
    if kind == "affine" and variable == "bias":
        ws = [32]
    return ws


def explicit_spec(ev: Evaluator, layer: str, variable: str, kind: str, bits: int, method: str,
                  percentile: float) -> VarSpec:
    """The spec of `variable` of `layer` at `bits`, with its FL or range found now (self-contained)."""
    node = next(n for n in ev.graph.nodes if n.name == layer)
    if kind == "fixed":
        if variable == "activations":
            data = ev.calibration.samples(node.inputs[0].name) if ev.calibration is not None else None
            if data is None:
                raise LpdcError("fixed-point activations need calibration data", where=f"layer '{layer}'")
        else:
            data = ev.graph.const_data(node.inputs[1 if variable == "weights" else 2])
        return VarSpec("fixed", bits, frac=best_frac(data, bits))
    if kind == "affine" and variable == "activations":
        if ev.calibration is None:
            raise LpdcError("affine activations need calibration data", where=f"layer '{layer}'")
        return VarSpec("affine", bits, range=ev.calibration.range(node.inputs[0].name, method, percentile, bits))
    return VarSpec(kind, bits)


def layer_analysis(ev: Evaluator, scheme: str = "fixed", widths: Sequence[int] = DEFAULT_WIDTHS,
                   variables: Sequence[str] = VARIABLES, method: str = "minmax", percentile: float = 99.99,
                   progress: Progress = None) -> list[SensitivityRow]:
    """The sensitivity table: one row per (layer, variable, bit width)."""
    kinds = TECHNIQUES[technique(scheme)]
    bad = sorted(set(variables) - set(VARIABLES))
    if bad:
        raise LpdcError(f"unknown variable {bad[0]!r} (known: {', '.join(VARIABLES)})", where="quantize")
    sizes = layer_sizes(ev.graph)
    rows = []
    for layer in quantizable_layers(ev.graph):
        s = sizes[layer]
        counts = {"weights": (s.weights, s.channels), "bias": (s.bias, 0), "activations": (s.activations, 0)}
        for var in variables:
            if counts[var][0] == 0:
                continue  # a layer without bias
            for bits in widths_for(kinds[var], var, widths):
                spec = explicit_spec(ev, layer, var, kinds[var], bits, method, percentile)
                config = QuantConfig(layers={layer: {var: spec}}, calibration=method, percentile=percentile,
                                     lowering="qdq")
                metric, cost = ev.measure(config)
                rows.append(SensitivityRow(layer, var, spec, metric, cost, spec_bits(spec, *counts[var])))
                if progress is not None:
                    progress(f"{layer}.{var}@{bits}")
    return rows


def analysis_steps(ev: Evaluator, scheme: str, widths: Sequence[int], variables: Sequence[str]) -> int:
    """How many evaluations layer_analysis will make (for a progress bar)."""
    kinds = TECHNIQUES[technique(scheme)]
    sizes = layer_sizes(ev.graph)
    return sum(len(widths_for(kinds[v], v, widths)) for s in sizes.values() for v in variables
               if (s.bias if v == "bias" else 1) > 0)
