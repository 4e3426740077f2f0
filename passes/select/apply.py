"""Writing a solved plan into the graph.

Before:  %c = conv(%x, %w)                            : f32[1,64,56,56]
         %p = max_pool(%c) {kernel=[2, 2], ...}        : f32[1,64,28,28]
After (conv as im2row@NHWC, the pool in NHWC, a graph output needing NCHW):
         %x.to_NHWC = layout_convert(%x) {src="NHWC"...} : f32[1,56,56,64]<layout=NHWC>
         %c = conv(%x.to_NHWC, %w) {primitive="im2row"}   : f32[1,56,56,64]<layout=NHWC>
         %p = max_pool(%c)                                : f32[1,28,28,64]<layout=NHWC>

Each node (in topological order) gets its primitive and layout-dependent attributes, every input
whose current layout differs from the one its choice reads gets a layout_convert (one per value
and target layout, shared by all consumers), and the node's types are re-inferred, which moves
its outputs into the chosen layout with the shapes permuted accordingly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import LpdcPassError
from ...ir import Graph, Value
from .build import Selection, wanted_layout
from .choices import DEFAULT_LAYOUT, attrs_for, is_activation


@dataclass(frozen=True)
class Conversion:
    """A layout_convert node the plan inserted."""

    name: str
    value: str
    src: str
    dst: str
    shape: tuple[int, ...]  # logical NCHW shape
    cost: float


def _convert(g: Graph, v: Value, dst: str, before, sel: Selection,
             memo: dict[tuple[str, str], Value], log: list[Conversion]) -> Value:
    src = v.type.effective_layout or DEFAULT_LAYOUT
    key = (v.name, dst)
    if key not in memo:
        channels = sel.original_types[v.name].shape[1]
        node = g.add_node("layout_convert", [v], {"src": src, "dst": dst, "channels": channels},
                          name=g.fresh_name(f"{v.name}.to_{dst}"), before=before)
        memo[key] = node.output
        logical = sel.original_types[v.name]
        log.append(Conversion(node.name, v.name, src, dst, logical.shape,
                              sel.pricer.convert_cost(logical, src, dst)))
    return memo[key]


def apply_plan(sel: Selection, choice: Mapping[str, int]) -> list[Conversion]:
    """Rewrite `sel.graph` in place to run the chosen plan; returns the conversions inserted."""
    g = sel.graph
    memo: dict[tuple[str, str], Value] = {}
    log: list[Conversion] = []
    for entry in sel.entries.values():
        node, picked = entry.node, entry.choices[choice[entry.key]]
        for i, v in enumerate(node.inputs):
            if v is None or v.name not in sel.original_types or not is_activation(sel.original_types[v.name]):
                continue
            want = wanted_layout(entry, picked, i)
            if (v.type.effective_layout or DEFAULT_LAYOUT) != want:
                node.set_input(i, _convert(g, v, want, node, sel, memo, log))
        attrs = attrs_for(node, picked.layout)
        attrs["primitive"] = picked.primitive
        node.attrs = attrs
        g.reinfer(node)
        for v in node.outputs:
            got = v.type.effective_layout or DEFAULT_LAYOUT
            if is_activation(sel.original_types[v.name]) and got != picked.layout:
                raise LpdcPassError(f"choice {picked.label} left output %{v.name} in layout {got}",
                                    where=f"node '{node.name}' ({node.op})")
    return log
