"""Rewriting helpers shared by the passes, and the greedy rule driver.

A rule is `fn(graph, node) -> bool`: it looks at one node, rewrites the graph if its pattern
matches and says whether it did. `run_rules` applies rules to every node until none fires.
The helpers keep the two invariants every rewrite must respect:
- graph outputs keep their names (a value that replaces an output takes the output's name);
- constants are never modified in place (`Graph.copy` shares parameter arrays): new data goes
  into a new constant, which takes the old one's name once the old one is unused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import LpdcError, LpdcGraphError
from ..ir import Graph, Node, Value, dtypes
from ..ir.registry import PURE
from .pattern import is_output

log = logging.getLogger(__name__)
Rule = Callable[[Graph, Node], bool]


def alive(g: Graph, node: Node) -> bool:
    """True while `node` is still in the graph (rules may erase nodes a sweep has yet to visit)."""
    v = node.outputs[0]
    try:
        return g.value(v.name) is v
    except LpdcGraphError:
        return False


def can_forward(g: Graph, old: Value, new: Value) -> bool:
    """Whether readers of `old` may read `new` instead without losing a graph output's name."""
    if not is_output(g, old):
        return True
    # `new` would have to be renamed to `old`'s name: impossible for a graph input, and a value
    # that is already an output would then stand for two outputs under one name.
    return new.producer is not None and not is_output(g, new)


def forward(g: Graph, node: Node, new: Value) -> bool:
    """Make the readers of `node`'s single output read `new`, then erase `node`."""
    old = node.output
    if not can_forward(g, old, new):
        return False
    was_output, name = is_output(g, old), old.name
    g.replace_all_uses(old, new)
    g.erase(node)
    if was_output:
        g.rename_value(new, name)
    return True


def rebuild(g: Graph, node: Node, inputs: Sequence[Value | None], attrs: Mapping[str, Any] | None = None,
            op: str | None = None) -> Node:
    """Replace `node` by a node (of the same op unless `op` is given) with new inputs/attributes;
    its outputs keep their names and readers. Needed when an optional input slot the node lacks
    must be filled, or to change an op. Raises LpdcGraphError, changing nothing, if the new node's
    output shapes or dtypes differ from the old ones."""
    ins = list(inputs)
    while ins and ins[-1] is None:
        ins.pop()
    names = [v.name for v in node.outputs]
    new = g.add_node(op or node.op, ins, dict(attrs if attrs is not None else node.attrs), name=node.name,
                     outputs=names, before=node)
    if [_shape_type(v) for v in new.outputs] != [_shape_type(v) for v in node.outputs]:
        g.erase(new)
        raise LpdcGraphError(f"rewriting node '{node.name}' as {op or node.op} would change its output type")
    for old_v, new_v in zip(node.outputs, new.outputs, strict=True):
        g.replace_all_uses(old_v, new_v)
    g.erase(node)
    for v, name in zip(new.outputs, names, strict=True):
        g.rename_value(v, name)
    return new


def _shape_type(v: Value) -> tuple:
    # quantization parameters are not compared: quantization passes set them, inference does not
    return (v.type.shape, v.type.dtype, v.type.layout)


def try_rebuild(g: Graph, node: Node, inputs: Sequence[Value | None], attrs: Mapping[str, Any] | None = None,
                op: str | None = None) -> Node | None:
    """`rebuild`, or None (graph unchanged) when the new node would not type-check the same."""
    try:
        return rebuild(g, node, inputs, attrs, op)
    except LpdcError:
        return None


def set_inputs(g: Graph, node: Node, updates: Mapping[int, Value | None], **attrs: Any) -> Node:
    """`node` with inputs `updates` (index -> value) and `attrs` changed; returns the node to use
    from now on (a new one when the input list had to grow or shrink)."""
    ins = list(node.inputs)
    ins += [None] * (max(updates, default=-1) + 1 - len(ins))
    for i, v in updates.items():
        ins[i] = v
    while ins and ins[-1] is None:
        ins.pop()
    new_attrs = {**node.attrs, **attrs}
    if len(ins) != len(node.inputs):
        return rebuild(g, node, ins, new_attrs)
    for i, v in enumerate(ins):
        if v is not node.inputs[i]:
            node.set_input(i, v)
    node.attrs = new_attrs
    g.reinfer(node)
    return node


def const_before(g: Graph, data: np.ndarray, node: Node, name: str, dtype: str | None = None) -> Value:
    """A new constant holding `data`, placed just before `node` so the order stays topological."""
    v = g.add_const(data, name, dtype=dtype)
    g.nodes.insert(g.nodes.index(node), g.nodes.pop())
    return v


def retire_const(g: Graph, old: Value | None, heir: Value) -> None:
    """Erase constant `old` if nothing reads it any more and give its name (and param key) to `heir`."""
    if old is None or old.producer is None or old.producer.op != "const" or old.users or is_output(g, old):
        return
    name = old.name
    g.erase(old.producer)
    name_const(g, heir, name)


def name_const(g: Graph, v: Value, name: str) -> None:
    """Rename constant `v` to the free name `name`: the value, its node and, when no other constant
    shares it, its parameter key (so small constants print inline again)."""
    g.rename_value(v, name)
    node = v.producer
    assert node is not None and node.op == "const"
    node.name = name
    param = node.attrs["param"]
    if param != name and name not in g.params and sum(n.op == "const" and n.attrs["param"] == param
                                                      for n in g.nodes) == 1:
        g.params[name] = g.params.pop(param)
        node.attrs["param"] = name


def replace_consts(g: Graph, node: Node, data: Mapping[int, np.ndarray], names: Mapping[int, str] | None = None,
                   **attrs: Any) -> Node:
    """Give `node` new constant inputs (index -> array, cast to the old input's dtype); the new
    constants inherit the names of the ones they replace."""
    old = {i: node.inputs[i] if i < len(node.inputs) else None for i in data}
    new: dict[int, Value] = {}
    for i, arr in sorted(data.items()):
        was = old[i]
        dtype = was.type.dtype if was is not None else node.inputs[0].type.dtype
        arr = np.asarray(arr).astype(dtypes.to_numpy(dtype))
        base = was.name if was is not None else (names or {}).get(i, f"{node.name}.{i}")
        new[i] = const_before(g, arr, node, base, dtype)
    node = set_inputs(g, node, new, **attrs)
    for i, v in new.items():
        retire_const(g, old[i], v)
    return node


def remove_dead(g: Graph) -> int:
    """Erase every pure node none of whose outputs is read or returned; the number erased."""
    outputs = set(g.outputs)
    count = 0
    for node in reversed(list(g.nodes)):
        if node.schema.has(PURE) and all(not v.users and v not in outputs for v in node.outputs):
            g.erase(node)
            count += 1
    return count


def run_rules(g: Graph, rules: Sequence[Rule], max_sweeps: int = 100) -> int:
    """Apply `rules` to every node, sweep after sweep, until none fires; the number of rewrites."""
    total = 0
    for _ in range(max_sweeps):
        fired = 0
        for node in list(g.nodes):
            for rule in rules:
                if alive(g, node) and rule(g, node):
                    fired += 1
        total += fired
        if not fired:
            return total
    log.warning("rules did not reach a fixed point in %d sweeps on graph @%s", max_sweeps, g.name)
    return total


def evaluate(g: Graph, node: Node) -> list[np.ndarray] | None:
    """Run `node` on its constant inputs with the NumPy reference kernel; None if it cannot be."""
    from ..backends.numpy.kernels import get_kernel

    kernel = get_kernel(node.op)
    if kernel is None:
        return None
    args = [None if v is None else g.const_data(v) for v in node.inputs]
    try:
        with np.errstate(all="ignore"):
            results = kernel(node, args, g)
    except Exception as e:  # leave the node unfolded: running the graph will report it by name
        log.debug("could not evaluate node %s (%s): %s", node.name, node.op, e)
        return None
    out = []
    for v, r in zip(node.outputs, results, strict=True):
        r = np.asarray(r)
        if r.shape != v.type.shape:
            return None
        out.append(r.astype(dtypes.to_numpy(v.type.dtype), copy=False))
    return out
