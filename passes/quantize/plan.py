"""From a configuration (+ calibration) to concrete formats per layer: the `LayerPlan`s lowering applies.

For every quantizable layer and variable the spec becomes a format:
    weights      fixed: FL searched on the weights | affine: symmetric per channel | kmeans: a Codebook
    activations  fixed: FL given or searched on calibration samples | affine: range given or calibrated
    bias         fixed: FL searched on the bias | affine: int32 at s_x * s_w (or symmetric if the layer
                 has no affine input and weights)
`act_out` (the layer output's format, used only by integer lowering to requantize the accumulator)
follows the layer's activation spec, calibrated on the output value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from ...errors import LpdcError
from ...ir import Graph, Node
from .calibrate import Calibration
from .config import QuantConfig, VarSpec, quantizable_layers
from .fixed_point import fixed_for
from .int8 import has_residual, integer_eligible, quantized_bias
from .kmeans import Codebook, kmeans_codebook
from .schemes import QFormat, accumulator_format, affine_range_format, symmetric_format

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerPlan:
    """Concrete formats for one layer (None = leave that variable in float)."""

    layer: str
    weights: QFormat | Codebook | None
    bias: QFormat | None
    act_in: QFormat | None
    act_out: QFormat | None = None
    integer: bool = False


def weight_format(w: np.ndarray, spec: VarSpec) -> QFormat | Codebook | None:
    if spec.kind == "fixed":
        return fixed_for(w, spec.bits, spec.frac)
    if spec.kind == "affine":
        return symmetric_format(w, spec.bits, 0 if spec.per_channel else None)
    if spec.kind == "kmeans":
        return kmeans_codebook(w, spec.bits, spec.centroid_bits, spec.frac)
    return None


def activation_format(name: str, spec: VarSpec, cal: Calibration | None, method: str = "minmax",
                      percentile: float = 99.99) -> QFormat | None:
    """The format of value %name under `spec`; calibration is needed unless the spec is explicit."""
    if spec.kind == "float":
        return None
    if spec.kind == "fixed":
        if spec.frac is not None:
            return fixed_for(None, spec.bits, spec.frac)
        return fixed_for(_need(cal, name).samples(name), spec.bits)
    if spec.range is not None:
        return affine_range_format(*spec.range, spec.bits)
    return affine_range_format(*_need(cal, name).range(name, method, percentile, spec.bits), spec.bits)


def _need(cal: Calibration | None, name: str) -> Calibration:
    if cal is None or name not in cal:
        raise LpdcError(f"activation %{name} needs calibration data (or an explicit frac/range in the "
                        "configuration)", where="quantize")
    return cal


def bias_format(b: np.ndarray, spec: VarSpec, act_in: QFormat | None, weights: object) -> QFormat | None:
    if spec.kind == "float":
        return None
    if spec.kind == "fixed":
        return fixed_for(b, min(spec.bits, 32), spec.frac)
    if isinstance(act_in, QFormat) and not act_in.is_fixed and isinstance(weights, QFormat) and not weights.is_fixed:
        return quantized_bias(b, accumulator_format(act_in, weights))
    return symmetric_format(b, min(spec.bits, 32), None)


def plan_layer(graph: Graph, node: Node, config: QuantConfig, cal: Calibration | None,
               terminal: bool = False) -> LayerPlan:
    """Concrete formats for `node` under `config` (integer lowering decided here too); a `terminal`
    layer (no quantized layer downstream) keeps its int32 accumulator instead of requantizing."""
    spec = {v: config.spec(node.name, v) for v in ("weights", "activations", "bias")}
    w = graph.const_data(node.inputs[1])
    weights = weight_format(w, spec["weights"])
    method, pct = config.calibration, config.percentile
    act_in = activation_format(node.inputs[0].name, spec["activations"], cal, method, pct)
    b = graph.const_data(node.inputs[2]) if len(node.inputs) > 2 else None
    bias = bias_format(b, spec["bias"], act_in, weights) if b is not None else None
    if config.lowering == "qdq" or (spec["activations"].kind == "float" and config.lowering == "auto"):
        return LayerPlan(node.name, weights, bias, act_in)
    out_name = node.output.name
    out_spec = replace(spec["activations"], frac=None, range=None)  # a given FL/range is the input's
    terminal = terminal or has_residual(node)  # the residual is added in float after dequantizing
    act_out = (activation_format(out_name, out_spec, cal, method, pct)
               if cal is not None and out_name in cal and not terminal else None)
    reason = integer_eligible(node, weights, act_in, act_out, terminal)
    if reason is not None:
        if config.lowering == "integer":
            raise LpdcError(f"cannot lower to integer kernels: {reason}", where=f"layer '{node.name}'")
        log.info("layer %s stays in float arithmetic: %s", node.name, reason)
        return LayerPlan(node.name, weights, bias, act_in)
    if b is not None:  # the integer kernel adds the bias in int32 at the accumulator's scale
        bias = quantized_bias(b, accumulator_format(act_in, weights))
    return LayerPlan(node.name, weights, bias, act_in, act_out, integer=True)


def build_plans(graph: Graph, config: QuantConfig, cal: Calibration | None) -> dict[str, LayerPlan]:
    """A LayerPlan for every quantizable layer of `graph`."""
    names = set(quantizable_layers(graph))
    quantized = {n for n in names if any(config.spec(n, v).kind != "float" for v in ("weights", "activations"))}
    return {n.name: plan_layer(graph, n, config, cal, not _feeds_quantized(n, quantized))
            for n in graph.nodes if n.name in names}


def _feeds_quantized(node: Node, quantized: set[str]) -> bool:
    """True if a layer in `quantized` reads (directly or through other nodes) what `node` computes."""
    seen: set[int] = set()
    stack = list(node.output.users)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.name in quantized:
            return True
        stack.extend(u for v in n.outputs for u in v.users)
    return False


def calibration_values(graph: Graph) -> set[str]:
    """The values whose statistics quantization may need: inputs and outputs of quantizable layers."""
    names = set(quantizable_layers(graph))
    out: set[str] = set()
    for n in graph.nodes:
        if n.name in names:
            out.update((n.inputs[0].name, n.output.name))
    return out
