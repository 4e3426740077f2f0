"""Values, nodes and the graph that owns them.

Use lists update themselves: a node's inputs change only through `Node.set_input` or graph
methods (`replace_all_uses`, `erase`), so `Value.users` is always right. Types are inferred when a
node is created; `verify()` re-checks everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import LpdcError, LpdcGraphError, LpdcTypeError
from . import dtypes, limits
from .registry import OpSchema, get_op
from .types import QuantParams, TensorType


class Value:
    """A typed edge: produced by one node (or a graph input), used by any number of nodes."""

    __slots__ = ("name", "type", "producer", "users")

    def __init__(self, name: str, type: TensorType, producer: Node | None = None) -> None:
        self.name = name
        self.type = type
        self.producer = producer
        self.users: list[Node] = []

    def __repr__(self) -> str:
        return f"%{self.name}"


class Node:
    """One op application. `name` is the layer name users know (defaults to the first output's)."""

    __slots__ = ("op", "name", "attrs", "_inputs", "outputs")

    def __init__(self, op: str, name: str, attrs: dict[str, Any]) -> None:
        self.op = op
        self.name = name
        self.attrs = attrs
        self._inputs: list[Value | None] = []
        self.outputs: list[Value] = []

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    @property
    def schema(self) -> OpSchema:
        return get_op(self.op)

    @property
    def output(self) -> Value:
        """The single output (most ops have one)."""
        return self.outputs[0]

    def set_input(self, index: int, value: Value | None) -> None:
        old = self._inputs[index]
        if old is not None:
            old.users.remove(self)
        self._inputs[index] = value
        if value is not None:
            value.users.append(self)

    def input_type(self, index: int) -> TensorType | None:
        v = self._inputs[index] if index < len(self._inputs) else None
        return None if v is None else v.type

    def __repr__(self) -> str:
        return f"Node({self.op} {self.name!r})"


def _copy_attr(a: Any) -> Any:
    return [_copy_attr(x) for x in a] if isinstance(a, list) else a


class Graph:
    """A dataflow graph: inputs, outputs, nodes in topological order, and constant data (`params`)."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self._values: dict[str, Value] = {}

    # ---- building -------------------------------------------------------------------------
    def fresh_name(self, base: str) -> str:
        """`base` if unused, else `base_1`, `base_2`, ..."""
        base = base or "v"
        if base not in self._values and base not in self.params:
            return base
        for i in itertools.count(1):
            cand = f"{base}_{i}"
            if cand not in self._values and cand not in self.params:
                return cand
        raise AssertionError("unreachable")

    def _new_value(self, name: str, type: TensorType, producer: Node | None) -> Value:
        if not name or name in self._values:
            raise LpdcGraphError(f"value name {name!r} is empty or already defined", where=producer and producer.name)
        v = Value(name, type, producer)
        self._values[name] = v
        return v

    def add_input(self, name: str, type: TensorType) -> Value:
        v = self._new_value(name, type, None)
        self.inputs.append(v)
        return v

    def add_const(self, data: np.ndarray | float | int | Sequence[Any], name: str = "const", dtype: str | None = None,
                  quant: QuantParams | None = None, param: str | None = None) -> Value:
        """A constant value; its data is stored in `params` under `param` (default: the value name)."""
        limits.check_nodes(len(self.nodes) + 1, where=f"graph @{self.name}")
        arr = np.asarray(data)
        if dtype is None:
            dtype = "f32" if arr.dtype.kind == "f" else dtypes.from_numpy(arr.dtype)
        arr = np.asarray(arr.astype(dtypes.to_numpy(dtype), copy=False), order="C")  # keeps 0-d scalars 0-d
        vname = self.fresh_name(name)
        pname = param if param is not None else vname
        if pname in self.params and self.params[pname] is not arr:
            pname = self.fresh_name(pname)
        self.params[pname] = arr
        node = Node("const", vname, get_op("const").normalize_attrs({"param": pname}))
        node.outputs = [self._new_value(vname, TensorType(arr.shape, dtype, None, quant), node)]
        self.nodes.append(node)
        return node.outputs[0]

    def add_node(self, op: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None, *,
                 name: str | None = None, outputs: Sequence[str] | None = None,
                 before: Node | None = None, types: Sequence[TensorType] | None = None) -> Node:
        """Create a node, infer its output types (or take `types`), and insert it (at the end or before `before`)."""
        limits.check_nodes(len(self.nodes) + 1, where=f"graph @{self.name}")
        schema = get_op(op)
        if op == "const":
            raise LpdcGraphError("use Graph.add_const for constants")
        where = name or (outputs[0] if outputs else op)
        try:
            norm = schema.normalize_attrs(attrs or {})
            ins = list(inputs)
            while ins and ins[-1] is None:
                ins.pop()
            schema.check_arity(len(ins))
            out_types = list(types) if types is not None else schema.infer([v and v.type for v in ins], norm)
        except LpdcError as e:
            raise type(e)(e.message, where=f"node '{where}' ({op})") from None
        out_names = list(outputs) if outputs else [name or op] + [f"{name or op}:{i}" for i in range(1, len(out_types))]
        if len(out_names) != len(out_types):
            raise LpdcTypeError(f"{len(out_names)} output names for {len(out_types)} outputs", where=f"node '{where}'")
        node = Node(op, "", norm)
        node._inputs = [None] * len(ins)
        for i, v in enumerate(ins):
            node.set_input(i, v)
        node.outputs = [self._new_value(self.fresh_name(n), t, node) for n, t in zip(out_names, out_types, strict=True)]
        node.name = name or node.outputs[0].name
        if before is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self.nodes.index(before), node)
        return node

    def op(self, op: str, /, *inputs: Value | None, name: str | None = None, **attrs: Any) -> Value:
        """Shorthand for a single-output node: `y = g.op("relu", x)`."""
        return self.add_node(op, inputs, attrs, name=name).outputs[0]

    def set_outputs(self, values: Iterable[Value]) -> None:
        self.outputs = list(values)

    # ---- editing --------------------------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every user of `old` (and the graph outputs) use `new` instead."""
        for user in list(old.users):
            for i, v in enumerate(user._inputs):
                if v is old:
                    user.set_input(i, new)
        self.outputs = [new if v is old else v for v in self.outputs]

    def rename_value(self, v: Value, name: str) -> None:
        """Give `v` the unused name `name` (node names, the layer names users know, stay as they are)."""
        if v.name == name:
            return
        if not name or name in self._values or self._values.get(v.name) is not v:
            raise LpdcGraphError(f"cannot rename %{v.name} to %{name}: name taken or value not in the graph")
        del self._values[v.name]
        v.name = name
        self._values[name] = v

    def erase(self, node: Node) -> None:
        """Remove a node whose outputs are unused; refuses otherwise."""
        for v in node.outputs:
            if v.users or v in self.outputs:
                raise LpdcGraphError(f"cannot erase: value %{v.name} is still used", where=f"node '{node.name}'")
        for i in range(len(node._inputs)):
            node.set_input(i, None)
        self.nodes.remove(node)
        for v in node.outputs:
            del self._values[v.name]
        if node.op == "const":
            param = node.attrs["param"]
            if not any(n.op == "const" and n.attrs["param"] == param for n in self.nodes):
                self.params.pop(param, None)

    def reinfer(self, node: Node) -> None:
        """Recompute a node's output types after its inputs or attributes changed."""
        schema = node.schema
        try:
            node.attrs = schema.normalize_attrs(node.attrs)
            types = schema.infer([v and v.type for v in node._inputs], node.attrs)
        except LpdcError as e:
            raise type(e)(e.message, where=f"node '{node.name}' ({node.op})") from None
        for v, t in zip(node.outputs, types, strict=True):
            v.type = t

    # ---- queries --------------------------------------------------------------------------
    def value(self, name: str) -> Value:
        try:
            return self._values[name]
        except KeyError:
            raise LpdcGraphError(f"no value named %{name}") from None

    def values(self) -> list[Value]:
        return list(self._values.values())

    def const_data(self, v: Value | None) -> np.ndarray | None:
        """The data of a constant value, else None."""
        if v is None or v.producer is None or v.producer.op != "const":
            return None
        return self.params[v.producer.attrs["param"]]

    def producer_of(self, v: Value) -> Node | None:
        return v.producer

    def to_networkx(self):  # -> networkx.MultiDiGraph
        """A networkx view (nodes are Node objects; edges carry the value) for graph algorithms."""
        import networkx as nx

        g = nx.MultiDiGraph()
        g.add_nodes_from(self.nodes)
        for n in self.nodes:
            for v in n._inputs:
                if v is not None and v.producer is not None:
                    g.add_edge(v.producer, n, value=v)
        return g

    def toposort(self) -> None:
        """Reorder nodes topologically (stable); a cycle is an LpdcGraphError naming a node on it."""
        from .verify import topological_order

        self.nodes = topological_order(self)

    def verify(self) -> None:
        from .verify import verify

        verify(self)

    def copy(self) -> Graph:
        """A structural deep copy; parameter arrays are shared (passes must not modify them in place)."""
        g = Graph(self.name)
        g.params = dict(self.params)
        vmap: dict[Value, Value] = {}
        for v in self.inputs:
            vmap[v] = g.add_input(v.name, v.type)
        for n in self.nodes:
            m = Node(n.op, n.name, {k: _copy_attr(a) for k, a in n.attrs.items()})
            m._inputs = [None] * len(n._inputs)
            for i, v in enumerate(n._inputs):
                m.set_input(i, None if v is None else vmap[v])
            m.outputs = [g._new_value(v.name, v.type, m) for v in n.outputs]
            vmap.update(zip(n.outputs, m.outputs, strict=True))
            g.nodes.append(m)
        g.outputs = [vmap[v] for v in self.outputs]
        return g

    def __str__(self) -> str:
        from .text import print_graph

        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.nodes)} nodes, {len(self.inputs)} inputs, {len(self.outputs)} outputs>"
