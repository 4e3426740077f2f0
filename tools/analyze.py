"""The model analyzer: per-layer and total parameters, memory and operation counts.

For a chosen bit width (32, 16, 8, 1) it reports each layer's weight bytes and output activation
bytes, the peak of live activations under the graph's execution order and the arena the memory
planner needs with buffer reuse, and each layer's multiplies, adds, divisions, comparisons, other
operations (exp, sqrt, ...) from the op registry's `flops`, plus multiply-accumulates (MACs) of the
dot-product layers. Building the graph is enough: nothing is executed.

`analyze(graph, bits)` -> ModelAnalysis; `format_table`, `to_json` present it; plots live in
tools/plots.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import LpdcError
from ..ir import Graph, Node
from ..ir.registry import FlopCount
from ..passes.plan_memory import plan_memory, value_bytes

BIT_WIDTHS = (32, 16, 8, 1)


@dataclass(frozen=True)
class LayerStats:
    """One node's numbers (its constant inputs are its parameters)."""

    name: str
    op: str
    output_shape: tuple[int, ...]
    params: int
    weight_bytes: int
    activation_bytes: int
    mul: int
    add: int
    div: int
    cmp: int
    other: int
    macs: int

    @property
    def ops(self) -> int:
        return self.mul + self.add + self.div + self.cmp + self.other


@dataclass(frozen=True)
class Totals:
    """Whole-model numbers; activation_bytes counts every activation once (graph inputs too)."""

    params: int
    weight_bytes: int
    activation_bytes: int
    peak_live_bytes: int
    arena_bytes: int
    mul: int
    add: int
    div: int
    cmp: int
    other: int
    macs: int
    ops: int


@dataclass(frozen=True)
class ModelAnalysis:
    """The analyzer's result for one graph at one bit width."""

    model: str
    bits: int
    layers: list[LayerStats]
    total: Totals
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _bytes_at(elements: int, bits: int) -> int:
    return math.ceil(elements * bits / 8)


def _layer(graph: Graph, node: Node, bits: int) -> LayerStats:
    consts = [v for v in node.inputs if graph.const_data(v) is not None]
    try:
        counts = node.schema.flops([v and v.type for v in node.inputs], [v.type for v in node.outputs], node.attrs)
    except LpdcError as e:
        raise type(e)(e.message, where=f"node '{node.name}' ({node.op})") from None
    return LayerStats(
        name=node.name, op=node.op, output_shape=node.outputs[0].type.shape if node.outputs else (),
        params=sum(v.type.size for v in consts),
        weight_bytes=sum(_bytes_at(v.type.size, bits) for v in consts),
        activation_bytes=sum(value_bytes(v, bits) for v in node.outputs),
        mul=counts.mul, add=counts.add, div=counts.div, cmp=counts.cmp, other=counts.other,
        macs=counts.mac,
    )


def analyze(graph: Graph, bits: int = 32) -> ModelAnalysis:
    """Count parameters, memory at `bits` per element, and operations for every layer of `graph`."""
    if bits not in BIT_WIDTHS:
        raise LpdcError(f"bit width must be one of {', '.join(map(str, BIT_WIDTHS))}, got {bits}")
    layers = [_layer(graph, n, bits) for n in graph.nodes if n.op != "const"]
    # Parameters shared by several layers (tied weights) count once in the total.
    unique = {n.attrs["param"]: n.output for n in graph.nodes if n.op == "const"}
    plan = plan_memory(graph, bits=bits)
    flops = sum((FlopCount(x.mul, x.add, x.div, x.cmp, x.other) for x in layers), FlopCount())
    total = Totals(
        params=sum(v.type.size for v in unique.values()),
        weight_bytes=sum(_bytes_at(v.type.size, bits) for v in unique.values()),
        activation_bytes=plan.naive_bytes,
        peak_live_bytes=plan.peak_live_bytes, arena_bytes=plan.arena_bytes,
        mul=flops.mul, add=flops.add, div=flops.div, cmp=flops.cmp, other=flops.other,
        macs=sum(x.macs for x in layers), ops=flops.total,
    )
    return ModelAnalysis(graph.name, bits, layers, total, {v.name: v.type.shape for v in graph.inputs})


def to_json(a: ModelAnalysis) -> dict[str, Any]:
    """A JSON-ready dict: model, bits, inputs, layers (list of dicts), total (params, macs, ...)."""
    layers = []
    for layer in a.layers:
        d = asdict(layer)
        d["output_shape"] = list(layer.output_shape)
        d["ops"] = layer.ops
        layers.append(d)
    return {"model": a.model, "bits": a.bits, "inputs": {k: list(v) for k, v in a.inputs.items()},
            "layers": layers, "total": asdict(a.total)}


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (binary prefixes for bytes)."""
    base, prefixes = (1024.0, ("", "Ki", "Mi", "Gi", "Ti")) if unit == "B" else (1000.0, ("", "K", "M", "G", "T"))
    i = 0
    while abs(n) >= base and i < len(prefixes) - 1:
        n /= base
        i += 1
    return f"{n:.0f}{prefixes[i]}{unit}" if i == 0 else f"{n:.2f}{prefixes[i]}{unit}"


_COLUMNS = ("layer", "op", "output", "params", "weights", "activations", "MACs", "mul", "add", "div", "cmp")


def format_table(a: ModelAnalysis, *, skip_empty: bool = False) -> str:
    """The terminal table: one row per layer, then totals and the memory summary."""
    rows = [_COLUMNS]
    for x in a.layers:
        if skip_empty and not (x.params or x.ops):
            continue
        rows.append((x.name, x.op, "x".join(map(str, x.output_shape)), human(x.params), human(x.weight_bytes, "B"),
                     human(x.activation_bytes, "B"), human(x.macs), human(x.mul), human(x.add), human(x.div),
                     human(x.cmp)))
    t = a.total
    rows.append(("TOTAL", "", "", human(t.params), human(t.weight_bytes, "B"), human(t.activation_bytes, "B"),
                 human(t.macs), human(t.mul), human(t.add), human(t.div), human(t.cmp)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    lines += [
        f"model {a.model} ({_inputs(a)}) at {a.bits}-bit: {human(t.params)} parameters, {human(t.macs)} MACs, "
        f"{human(t.ops)} operations",
        f"weights {human(t.weight_bytes, 'B')}; activations {human(t.activation_bytes, 'B')} in all, "
        f"peak live {human(t.peak_live_bytes, 'B')}, arena with reuse {human(t.arena_bytes, 'B')}",
    ]
    return "\n".join(lines)


def _inputs(a: ModelAnalysis) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in a.inputs.items()) or "no inputs"
