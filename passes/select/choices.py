"""What each node may become: its choices of (primitive, layout).

conv and fully_connected choose among the catalog's primitives (backends/numpy/primitives), each
of which fixes the layout. Ops whose meaning does not depend on the layout (element-wise ops on
operands of the full shape, ReLU, pooling, batch-norm, LRN, concat on channels) get one choice per
layout their type inference accepts. Every other op keeps NCHW. A node's `layout` applies to all
its activation inputs and outputs; "-" marks nodes without any 4-D activation.

The final guard is the IR itself: a layout is offered only if the op's inference accepts inputs
in it and returns outputs in it, so an op whose inference supports only NCHW never gets another.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ...backends.numpy.primitives import Primitive, primitives_for
from ...backends.numpy.primitives.dispatch import conv_spec, fc_spec
from ...errors import LpdcError
from ...ir import Graph, Node, TensorType
from ...ir.ops.quant import layout_shape
from ...ir.registry import LAYOUT_AGNOSTIC
from ...ir.types import is_blocked_layout

NO_LAYOUT = "-"
DEFAULT_LAYOUT = "NCHW"
LAYOUTS = ("NCHW", "NHWC", "NCHW8c")
# Ops whose kernels read the layout from the type and mean the same thing in every layout.
LAYOUT_AWARE_OPS = frozenset({"batch_norm", "max_pool", "avg_pool", "global_avg_pool", "global_max_pool", "lrn",
                              "normalize", "concat"})
FALLBACK = {"conv": "im2col", "fully_connected": "gemm"}  # the reference primitives
_WEIGHT_INPUTS = {"conv": {1}, "conv_transpose": {1}, "fully_connected": {1}}


@dataclass(frozen=True)
class Choice:
    """One way to run a node: a catalog primitive ("" for ops without one) and its layout."""

    primitive: str
    layout: str

    @property
    def label(self) -> str:
        return f"{self.primitive or '-'}@{self.layout}"


def is_activation(t: TensorType | None) -> bool:
    """A 4-D activation in the default layout (the only kind selection re-lays out)."""
    return t is not None and t.rank == 4 and t.effective_layout == DEFAULT_LAYOUT


def data_inputs(node: Node) -> list[int]:
    """Indices of the inputs that follow the node's layout (its 4-D activations, not weights)."""
    skip = _WEIGHT_INPUTS.get(node.op, set())
    return [i for i, v in enumerate(node.inputs) if i not in skip and v is not None and is_activation(v.type)]


def base_layout(node: Node) -> str:
    """NCHW if the node touches any 4-D activation, else "-"."""
    touches = data_inputs(node) or any(is_activation(v.type) for v in node.outputs)
    return DEFAULT_LAYOUT if touches else NO_LAYOUT


def attrs_for(node: Node, layout: str) -> dict[str, Any]:
    """The node's attributes in `layout` (concat's channel axis moves to the end in NHWC)."""
    attrs = dict(node.attrs)
    if node.op == "concat" and layout == "NHWC":
        attrs["axis"] = 3
    return attrs


def retyped(t: TensorType, layout: str) -> TensorType:
    """A default-layout 4-D type moved to `layout`."""
    return t.with_layout(None if layout == DEFAULT_LAYOUT else layout, layout_shape(t.shape, DEFAULT_LAYOUT, layout))


def layout_ok(node: Node, layout: str) -> bool:
    """Whether the op's type inference accepts the node's activations in `layout` and keeps it."""
    if layout == DEFAULT_LAYOUT:
        return True
    idx = set(data_inputs(node))
    ins = [node.inputs[i].type for i in idx]
    if any(t.quant is not None and t.quant.axis is not None for t in ins):
        return False  # per-channel quantization names the channel axis of the default layout
    if is_blocked_layout(layout) and any(t.shape[1] % int(layout[4:-1]) for t in ins):
        return False  # padding channels would change what reductions and concat see
    try:
        types = [None if v is None else retyped(v.type, layout) if i in idx else v.type
                 for i, v in enumerate(node.inputs)]
        schema = node.schema
        outs = schema.infer(types, schema.normalize_attrs(attrs_for(node, layout)))
    except LpdcError:
        return False
    return all(t.effective_layout == layout for t, v in zip(outs, node.outputs, strict=True) if is_activation(v.type))


def _glue_layouts(node: Node) -> list[str]:
    """Layouts for an op without primitives: all that are safe, else the default."""
    base = base_layout(node)
    if base == NO_LAYOUT or node.attrs.get("activation") == "prelu":
        return [base]
    idx = data_inputs(node)
    if node.op == "concat":
        safe = node.attrs["axis"] % 4 == 1 and len(idx) == len(node.inputs)
    elif node.op in LAYOUT_AWARE_OPS:
        safe = idx == [0]
    elif node.schema.has(LAYOUT_AGNOSTIC):
        out = node.outputs[0].type
        safe = bool(idx) and len(idx) == sum(v is not None for v in node.inputs) and \
            all(node.inputs[i].type.shape == out.shape for i in idx)
    else:
        safe = False
    if not safe:
        return [base]
    return [lay for lay in LAYOUTS if layout_ok(node, lay)]


def primitive_choices(node: Node, graph: Graph, only: Collection[str] | None = None,
                      max_workspace: int | None = None) -> list[tuple[Choice, Primitive]]:
    """conv / fully_connected choices from the catalog that apply (and fit `max_workspace`)."""
    w = graph.const_data(node.inputs[1])  # real weights: their density decides the sparse primitives
    if node.op == "conv":
        if not is_activation(node.inputs[0].type):
            return []
        spec = conv_spec(node, w)
    elif node.op == "fully_connected":
        spec = fc_spec(node, w)
    else:
        return []
    prelu = node.attrs.get("activation") == "prelu"
    out = []
    for prim in primitives_for(node.op):
        if only is not None and prim.name not in only:
            continue
        layout = base_layout(node) if node.op == "fully_connected" else prim.in_layout
        if not prim.applies(spec) or (prelu and layout != DEFAULT_LAYOUT):
            continue
        if max_workspace is not None and prim.workspace(spec) > max_workspace:
            continue
        if node.op == "conv" and not layout_ok(node, layout):
            continue
        out.append((Choice(prim.name, layout), prim))
    return out


def node_choices(node: Node, graph: Graph, only: Collection[str] | None = None,
                 max_workspace: int | None = None, pin_default: bool = False) -> list[Choice]:
    """Every choice for `node`; `only` restricts primitives (a node none of them applies to falls
    back to the reference: im2col / gemm); `pin_default` keeps the default layout (graph outputs)."""
    if node.op in ("conv", "fully_connected"):
        found = primitive_choices(node, graph, only, max_workspace)
        if not found and only is not None:
            found = primitive_choices(node, graph, {FALLBACK[node.op]}, None)
        choices = [c for c, _ in found] or [Choice("", base_layout(node))]
    else:
        choices = [Choice("", lay) for lay in _glue_layouts(node)]
    if pin_default:
        pinned = [c for c in choices if c.layout in (DEFAULT_LAYOUT, NO_LAYOUT)]
        choices = pinned or [Choice("", base_layout(node))]
    return choices
