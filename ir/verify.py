"""`verify(graph)`: every structural and type rule, with messages that name the node.

Checks: known ops and attributes, arity, unique value names, inputs defined before use (no
dangling values, no cycles), constants backed by data of the declared type, positive-or-zero
dimensions, and declared output types equal to what inference gives.
"""

from __future__ import annotations

from ..errors import LpdcError, LpdcGraphError, LpdcTypeError
from . import dtypes
from .graph import Graph, Node, Value
from .registry import get_op


def _where(node: Node) -> str:
    return f"node '{node.name}' ({node.op})"


def _context(g: Graph, node: Node) -> str:
    """A few lines of textual IR around the failing node, for the error message."""
    from .text import _print_node

    try:
        i = g.nodes.index(node)
    except ValueError:
        return ""
    lines = []
    for n in g.nodes[max(0, i - 2): i + 3]:
        try:
            text = _print_node(g, n)
        except Exception:  # printing must never hide the real error
            text = f"  <{n.op} {n.name}>"
        lines.append(("> " if n is node else "  ") + text.strip())
    return "\n" + "\n".join(lines)


def topological_order(g: Graph) -> list[Node]:
    """Nodes in a topological order that keeps the current order where it already is one."""
    import networkx as nx

    nxg = g.to_networkx()
    rank = {n: i for i, n in enumerate(g.nodes)}
    try:
        return list(nx.lexicographical_topological_sort(nxg, key=lambda n: rank[n]))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(nxg)
        names = " -> ".join(f"'{u.name}'" for u, _v, *_ in cycle)
        raise LpdcGraphError(f"the graph has a cycle: {names}", where=_where(cycle[0][0])) from None


def verify(g: Graph) -> None:
    """Raise an LpdcError naming the first offending node; return None when the graph is valid."""
    defined: set[Value] = set()
    names: set[str] = set()
    for v in g.inputs:
        _check_value_name(v, names, "graph input")
        defined.add(v)
    produced = {v for n in g.nodes for v in n.outputs}
    for node in g.nodes:
        try:
            _verify_node(g, node, defined, produced)
        except LpdcError as e:
            if e.where and e.where.startswith("node "):
                raise
            raise type(e)(e.message + _context(g, node), where=_where(node)) from None
        for v in node.outputs:
            _check_value_name(v, names, _where(node))
            defined.add(v)
    for v in g.outputs:
        if v not in defined:
            raise LpdcGraphError(f"graph output %{v.name} is not produced by any node or input")
    if not g.outputs:
        raise LpdcGraphError(f"graph @{g.name} has no outputs")


def _check_value_name(v: Value, names: set[str], where: str) -> None:
    if v.name in names:
        raise LpdcGraphError(f"value %{v.name} is defined twice", where=where)
    names.add(v.name)


def _verify_node(g: Graph, node: Node, defined: set[Value], produced: set[Value]) -> None:
    schema = get_op(node.op)  # unknown op -> LpdcUnsupportedError with near matches
    schema.check_arity(len(node.inputs))
    normalized = schema.normalize_attrs(node.attrs)
    for i, v in enumerate(node.inputs):
        if v is None:
            if i < schema.min_inputs:
                raise LpdcGraphError(f"required input {i} ({schema.inputs[min(i, len(schema.inputs) - 1)]}) is absent")
            continue
        if v not in defined:
            if v in produced:
                raise LpdcGraphError(f"input %{v.name} is used before it is defined (a cycle or bad order)")
            raise LpdcGraphError(f"input %{v.name} is dangling: no node or graph input produces it")
        if node not in v.users:
            raise LpdcGraphError(f"use list of %{v.name} is missing this node")
    for v in node.outputs:
        if any(d < 0 for d in v.type.shape):
            raise LpdcTypeError(f"value %{v.name} has a negative dimension {list(v.type.shape)}")
        if v.producer is not node:
            raise LpdcGraphError(f"value %{v.name} does not point back to its producer")
    if node.op == "const":
        _verify_const(g, node)
        return
    inferred = schema.infer([None if v is None else v.type for v in node.inputs], normalized)
    if len(inferred) != len(node.outputs):
        raise LpdcTypeError(f"op gives {len(inferred)} outputs but the node has {len(node.outputs)}")
    for v, t in zip(node.outputs, inferred, strict=True):
        # Quantization parameters of integer outputs are chosen by quantization passes, not inferred.
        declared = v.type if t.quant is not None or v.type.quant is None else v.type.with_dtype(v.type.dtype)
        if (declared.shape, declared.dtype, declared.layout) != (t.shape, t.dtype, t.layout):
            from .text import print_type

            raise LpdcTypeError(f"type mismatch on %{v.name}: declared {print_type(v.type)}, inferred {print_type(t)}")


def _verify_const(g: Graph, node: Node) -> None:
    param = node.attrs["param"]
    if param not in g.params:
        raise LpdcGraphError(f"constant data @{param} is missing")
    data, t = g.params[param], node.outputs[0].type
    if tuple(data.shape) != t.shape or data.dtype != dtypes.to_numpy(t.dtype):
        raise LpdcTypeError(
            f"constant @{param} holds {data.dtype}{list(data.shape)} but is typed {t.dtype}{list(t.shape)}")
