"""Graphviz rendering of the IR: one box per node, edges labelled with the tensor they carry.

`to_dot(graph)` builds the DOT graph (python `graphviz` package, no binary needed);
`render(graph, path)` writes .dot/.gv source directly and .svg/.png/.pdf through Graphviz's `dot`
program. When `dot` is not installed, render writes the DOT source beside the requested file and
warns (`DotMissingWarning`), or raises LpdcError with `strict=True`.

With `plan=True` the picture shows the plan: boxes filled by device (node attr `device`), labelled
with the chosen primitive (attr `primitive`) and the output layout (from the value's type), and
layout_convert nodes drawn as red hexagons; a `MemoryPlan` adds each tensor's arena offset.
Constant inputs (weights) are folded into their consumer's label unless `show_consts`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LpdcError
from ..ir import Graph, Node, Value

if TYPE_CHECKING:
    import graphviz

    from ..passes.plan_memory import MemoryPlan

RENDER_FORMATS = ("svg", "png", "pdf")
SOURCE_FORMATS = ("dot", "gv")
# Fill colours for devices, in order of first appearance (sorted names): ColorBrewer Set3.
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5")
_CONVERT_STYLE = {"shape": "hexagon", "style": "filled,bold", "fillcolor": "#fbb4ae", "color": "#e41a1c"}


class DotMissingWarning(UserWarning):
    """Graphviz's `dot` program is not installed; only DOT source could be written."""


def dot_available() -> bool:
    return shutil.which("dot") is not None


def _esc(text: str) -> str:
    # DOT reads backslash sequences in labels (\n, \l); a literal backslash must be doubled.
    return text.replace("\\", "\\\\")


def _shape(v: Value) -> str:
    return "x".join(map(str, v.type.shape)) or "scalar"


def _tensor(v: Value) -> str:
    return f"{v.type.dtype}[{_shape(v)}]"


def _summary(node: Node) -> str:
    """The attributes a reader wants at a glance (kernel/stride/group, activation)."""
    a = node.attrs
    parts = []
    if "kernel" in a:
        parts.append("k" + "x".join(map(str, a["kernel"])))
    if "stride" in a and any(s != 1 for s in a["stride"]):
        parts.append("s" + "x".join(map(str, a["stride"])))
    if a.get("group", 1) != 1:
        parts.append(f"g{a['group']}")
    if a.get("activation", "none") != "none":
        parts.append(f"+{a['activation']}")
    if node.op == "layout_convert":
        parts.append(f"{a['src']} -> {a['dst']}")
    return " ".join(parts)


def _label(graph: Graph, node: Node, plan: bool, show_consts: bool) -> str:
    lines = [node.name, node.op + (f"  {_summary(node)}" if _summary(node) else "")]
    if not show_consts:
        weights = [v for v in node.inputs if graph.const_data(v) is not None]
        if len(weights) <= 2:
            lines += [f"w {_shape(v)}" for v in weights[:1]] + [f"b {_shape(v)}" for v in weights[1:]]
        else:
            lines.append(f"{len(weights)} weights, {sum(v.type.size for v in weights)} values")
    lines.append(", ".join(_tensor(v) for v in node.outputs))
    if plan:
        layout = node.outputs[0].type.effective_layout if node.outputs else None
        lines.append(f"primitive: {node.attrs.get('primitive') or '-'}  layout: {layout or '-'}")
        if node.attrs.get("device"):
            lines.append(f"device: {node.attrs['device']}")
    return "\n".join(_esc(x) for x in lines)


def _node_style(node: Node, plan: bool, colours: dict[str, str]) -> dict[str, str]:
    if node.op == "layout_convert":
        return dict(_CONVERT_STYLE)
    style = {"shape": "box", "style": "rounded,filled", "fillcolor": "#f0f0f0"}
    if plan and node.attrs.get("device"):
        style["fillcolor"] = colours[node.attrs["device"]]
    elif node.op == "const":
        style.update(shape="note", fillcolor="#ffffff")
    return style


def to_dot(graph: Graph, *, plan: bool = False, memory: MemoryPlan | None = None, show_consts: bool = False,
           rankdir: str = "TB") -> graphviz.Digraph:
    """The DOT graph of `graph` (see the module docstring for what `plan` and `memory` add)."""
    import graphviz

    dot = graphviz.Digraph(graph.name, graph_attr={"rankdir": rankdir, "fontname": "Helvetica"},
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "8", "color": "#555555"})
    devices = sorted({n.attrs.get("device") for n in graph.nodes if n.attrs.get("device")})
    colours = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(devices)}
    ids: dict[Value, str] = {}
    for i, v in enumerate(graph.inputs):
        ids[v] = f"in{i}"
        dot.node(f"in{i}", _esc(f"{v.name}\n{_tensor(v)}"), shape="oval", style="filled", fillcolor="#d9f0d3")
    shown = [n for n in graph.nodes if show_consts or n.op != "const"]
    for i, node in enumerate(shown):
        for v in node.outputs:
            ids[v] = f"n{i}"
        dot.node(f"n{i}", _label(graph, node, plan, show_consts), **_node_style(node, plan, colours))
    for i, node in enumerate(shown):
        for v in node.inputs:
            if v is not None and v in ids:
                dot.edge(ids[v], f"n{i}", label=_edge_label(v, memory))
    for i, v in enumerate(graph.outputs):
        dot.node(f"out{i}", _esc(f"output {v.name}"), shape="oval", style="filled", fillcolor="#fee0d2")
        if v in ids:
            dot.edge(ids[v], f"out{i}", label=_edge_label(v, memory))
    if plan and colours:
        _legend(dot, colours)
    return dot


def _edge_label(v: Value, memory: MemoryPlan | None) -> str:
    text = _shape(v)
    if memory is not None and v.name in memory.offsets:
        text += f" @{memory.offsets[v.name]}"
    return text


def _legend(dot: graphviz.Digraph, colours: dict[str, str]) -> None:
    with dot.subgraph(name="cluster_legend") as leg:
        leg.attr(label="devices", fontsize="10", style="dashed")
        for i, (device, colour) in enumerate(colours.items()):
            leg.node(f"legend{i}", _esc(device), shape="box", style="filled", fillcolor=colour)


def render(graph: Graph, path: str | os.PathLike[str], *, strict: bool = False, plan: bool = False,
           memory: MemoryPlan | None = None, show_consts: bool = False) -> Path:
    """Write `graph` as DOT source or an image chosen by the file suffix; returns the path written."""
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in RENDER_FORMATS + SOURCE_FORMATS:
        raise LpdcError(f"cannot render to {out.suffix or 'a file without suffix'}; use one of "
                        f"{', '.join('.' + f for f in RENDER_FORMATS + SOURCE_FORMATS)}", where=str(out))
    dot = to_dot(graph, plan=plan, memory=memory, show_consts=show_consts)
    if fmt in SOURCE_FORMATS:
        return _write(out, dot.source.encode())
    if not dot_available():
        msg = ("Graphviz's 'dot' program is not installed (Debian: apt-get install graphviz), so "
               f"{out.name} cannot be rendered")
        if strict:
            raise LpdcError(msg, where=str(out))
        fallback = out.with_suffix(".dot")
        warnings.warn(f"{msg}; wrote the DOT source to {fallback} instead", DotMissingWarning, stacklevel=2)
        return _write(fallback, dot.source.encode())
    try:
        data = dot.pipe(format=fmt)
    except Exception as e:  # graphviz.ExecutableNotFound / CalledProcessError: name the file
        raise LpdcError(f"dot failed to render: {e}", where=str(out)) from None
    return _write(out, data)


def _write(out: Path, data: bytes) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as e:
        raise LpdcError(f"cannot write: {e}", where=str(out)) from None
    return out
