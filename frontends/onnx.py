"""The ONNX frontend: `load_onnx(path)` reads an ONNX model (opsets 7 to the newest the installed
onnx knows) into an IR graph.

Initializers and Constant nodes become constants; every node goes through a converter
(onnx_ops*.py) that emits IR nodes, whose types the IR infers as they are added. Graph inputs
with symbolic dimensions take the user's `shapes` (or batch 1 for a leading one). Shape
arithmetic on constants folds at import. Bad input is an LpdcError naming the file and node:
unreadable files, unknown ops (with near matches), malformed tensors, external data outside the
model's directory, tensors over `max_elements`, undefined values and cycles.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LpdcError, LpdcGraphError, LpdcParseError, LpdcUnsupportedError
from ..ir import Graph, TensorType, Value, dtypes, limits
from . import onnx_ops, onnx_ops_nn, onnx_ops_quant, onnx_ops_shape  # noqa: F401  (registers converters)
from .finite import count_nonfinite, warn_nonfinite
from .onnx_context import CONVERTERS, Ctx
from .onnx_ops_quant import input_quant
from .onnx_tensors import (
    check_elements,
    check_model_header,
    ir_dtype,
    read_model,
    tensor_to_array,
)

log = logging.getLogger(__name__)

MIN_OPSET = 7


def load_onnx(path: str | os.PathLike[str], shapes: Mapping[str, Sequence[int]] | None = None,
              max_elements: int | None = None, **_: Any) -> Graph:
    """Load an ONNX file into the IR (`shapes` fixes symbolic input dimensions by input name).
    `max_elements` defaults to the current `lpdc.ir.limits` (as do the node and weight-byte limits)."""
    p = Path(path)
    model = read_model(p)
    return convert_model(model, source=str(p), base_dir=p.parent, shapes=shapes, max_elements=max_elements)


def convert_model(model: Any, *, source: str = "<onnx model>", base_dir: Path | None = None,
                  shapes: Mapping[str, Sequence[int]] | None = None, max_elements: int | None = None,
                  constants: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Convert an in-memory ModelProto. `constants` turns the named graph inputs into constants."""
    check_model_header(model, source)
    opset = _opset(model, source)
    graph = model.graph
    max_elements = limits.current().max_elements if max_elements is None else int(max_elements)
    _check_declared_size(graph, max_elements, source)
    g = Graph(graph.name or "main")
    values: dict[str, Value] = {}
    _add_initializers(g, graph, values, base_dir, max_elements, source)
    _add_inputs(g, graph, values, dict(shapes or {}), dict(constants or {}), max_elements, source)
    for node in _ordered_nodes(graph, set(values), source):
        _convert_node(g, node, values, opset, max_elements, source)
    outs = []
    for o in graph.output:
        if o.name not in values:
            raise LpdcGraphError(f"graph output '{o.name}' is not produced by any node", where=source)
        outs.append(values[o.name])
    g.set_outputs(outs)
    _prune(g)
    try:
        g.verify()
    except LpdcError as e:
        raise type(e)(e.message, where=f"{source}: {e.where}" if e.where else source) from None
    return g


def _opset(model: Any, source: str) -> int:
    import onnx

    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise LpdcUnsupportedError("the model imports no default-domain ONNX opset", where=source)
    v = int(versions[0])
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= v <= newest:
        raise LpdcUnsupportedError(f"opset {v} is not supported (opsets {MIN_OPSET} to {newest} are)", where=source)
    return v


def _check_declared_size(graph: Any, max_elements: int, source: str) -> None:
    """Refuse a model whose node count or total initializer bytes is over the limits, from the
    declared dims alone (before any tensor is decoded or allocated)."""
    limits.check_nodes(len(graph.node) + len(graph.initializer), where=source)
    total = 0
    for t in graph.initializer:
        dims = [int(d) for d in t.dims]
        check_elements(dims, max_elements, f"tensor '{t.name}'", source)
        dtype = ir_dtype(t.data_type, f"{source}: tensor '{t.name}'")
        total += math.prod(dims) * dtypes.itemsize(dtype)
    limits.check_weight_bytes(total, where=source)


def _add_initializers(g: Graph, graph: Any, values: dict[str, Value], base_dir: Path | None, max_elements: int,
                      source: str) -> None:
    bad: list[tuple[str, int]] = []
    for t in graph.initializer:
        arr = tensor_to_array(t, base_dir, max_elements, source)
        if count_nonfinite(arr):
            bad.append((t.name, count_nonfinite(arr)))
        values[t.name] = g.add_const(arr, t.name or "init", ir_dtype(t.data_type, source))
    warn_nonfinite(bad, source, stacklevel=5)
    for t in graph.sparse_initializer:
        raise LpdcUnsupportedError(f"sparse initializer '{t.values.name}' is not supported", where=source)


def _add_inputs(g: Graph, graph: Any, values: dict[str, Value], shapes: dict[str, Sequence[int]],
                constants: dict[str, np.ndarray], max_elements: int, source: str) -> None:
    real = [i for i in graph.input if i.name not in values]
    unknown = sorted(set(shapes) - {i.name for i in real})
    if unknown:
        raise LpdcParseError(f"shapes= names unknown input {unknown[0]!r} (inputs: "
                             f"{', '.join(i.name for i in real)})", where=source)
    for inp in real:  # constants first: quantized inputs read their scales from them
        if not inp.type.HasField("tensor_type"):
            raise LpdcUnsupportedError("only tensor inputs are supported (not sequences, maps or optionals)",
                                       where=f"{source}: input '{inp.name}'")
        if inp.name in constants:
            dtype = ir_dtype(inp.type.tensor_type.elem_type, f"{source}: input '{inp.name}'")
            values[inp.name] = g.add_const(np.asarray(constants[inp.name]), inp.name, dtype)
    for inp in real:
        if inp.name in constants:
            continue
        where = f"{source}: input '{inp.name}'"
        dtype = ir_dtype(inp.type.tensor_type.elem_type, where)
        shape = _input_shape(inp, shapes.get(inp.name), where)
        check_elements(shape, max_elements, f"input '{inp.name}'", where)
        quant = input_quant(graph, inp.name, len(shape), g, values) if dtype in ("u8", "i8", "i16", "u16") else None
        if quant is not None and quant.axis is not None and shape[quant.axis] != len(quant.scale):
            quant = None  # parameters that do not fit: the converter reports them with the node's name
        values[inp.name] = g.add_input(inp.name, TensorType(tuple(shape), dtype, None, quant))


def _input_shape(inp: Any, given: Sequence[int] | None, where: str) -> list[int]:
    """Static dims as declared; symbolic ones from the user's shape, else 1 for a leading batch dim."""
    tt = inp.type.tensor_type
    if not tt.HasField("shape"):
        if given is None:
            raise LpdcParseError("input has no shape; give one with shapes={name: [...]}", where=where)
        return [int(d) for d in given]
    dims = list(tt.shape.dim)
    if given is not None:
        if len(given) != len(dims) or any(d.HasField("dim_value") and d.dim_value != int(s)
                                          for d, s in zip(dims, given, strict=True)):
            declared = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
            raise LpdcParseError(f"given shape {list(given)} does not fit the declared {declared}", where=where)
        return [int(s) for s in given]
    shape = []
    for i, d in enumerate(dims):
        if d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        elif i == 0:
            log.info("%s: symbolic batch dimension %r set to 1", where, d.dim_param or "?")
            shape.append(1)
        else:
            raise LpdcParseError(f"dimension {i} ({d.dim_param or '?'}) is symbolic; give the shape with "
                                 f"shapes={{{inp.name!r}: [...]}}", where=where)
    return shape


def _ordered_nodes(graph: Any, available: set[str], source: str) -> list[Any]:
    """Nodes in a topological order (ONNX requires one, but be lenient); undefined inputs and
    cycles are LpdcGraphErrors naming the nodes."""
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for o in node.output:
            if o and (o in producer or o in available):
                raise LpdcGraphError(f"value '{o}' is defined twice", where=f"{source}: node '{_name(node)}'")
            if o:
                producer[o] = i
    deps: list[set[int]] = []
    for node in graph.node:
        d = set()
        for name in node.input:
            if name and name not in available:
                if name not in producer:
                    raise LpdcGraphError(f"input '{name}' is not produced by any node, input or initializer",
                                         where=f"{source}: node '{_name(node)}' ({node.op_type})")
                d.add(producer[name])
        deps.append(d)
    order: list[int] = []
    done: set[int] = set()
    pending = list(range(len(graph.node)))
    while pending:
        ready = [i for i in pending if deps[i] <= done]
        if not ready:
            raise LpdcGraphError(f"the graph has a cycle: {_cycle(graph, deps, set(pending))}", where=source)
        order.extend(ready)
        done.update(ready)
        pending = [i for i in pending if i not in done]
    return [graph.node[i] for i in order]


def _cycle(graph: Any, deps: list[set[int]], pending: set[int]) -> str:
    """Names of the nodes on one cycle among the nodes that could not be ordered."""
    path: list[int] = []
    i = min(pending)
    while i not in path:
        path.append(i)
        i = min(d for d in deps[i] if d in pending)
    cyc = path[path.index(i):] + [i]
    return " -> ".join(f"'{_name(graph.node[j])}'" for j in reversed(cyc))


def _name(node: Any) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def _convert_node(g: Graph, node: Any, values: dict[str, Value], opset: int, max_elements: int,
                  source: str) -> None:
    where = f"{source}: node '{_name(node)}' ({node.op_type})"
    fn = CONVERTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if fn is None:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        near = difflib.get_close_matches(node.op_type, sorted(CONVERTERS), n=3, cutoff=0.6)
        hint = f"; near matches: {', '.join(near)}" if near else ""
        raise LpdcUnsupportedError(f"unsupported ONNX op '{op}'{hint}", where=where)
    ctx = Ctx(g, values, opset, node, where, max_elements)
    try:
        outs = list(fn(ctx))
    except LpdcError as e:
        raise type(e)(e.message, where=where) from None
    except Exception as e:  # malformed attributes or inputs: report them, never a raw traceback
        raise LpdcParseError(f"cannot convert: {type(e).__name__}: {e}", where=where) from e
    for name, v in zip(node.output, outs, strict=False):
        if name and v is not None:
            values[name] = v


def _prune(g: Graph) -> None:
    """Drop nodes nothing reads (constants left behind by folding, unused ONNX branches)."""
    keep = set(g.outputs)
    for node in reversed(list(g.nodes)):
        if all(not v.users and v not in keep for v in node.outputs):
            g.erase(node)
