"""Per-layer, per-primitive timings: every implementation the NumPy primitive catalog offers.

The catalog lives in `lpdc.backends.numpy.primitives` (written separately). This module only
needs from it a way to list, for a node, the names of the primitives that can run it; it accepts
a function (`primitives_for(node)`, `candidates(node)`, `choices(node)`), a table keyed by op
name, or a table of primitive records that carry an `.op`. Each candidate runs as a one-node
graph whose `primitive` attribute names it, on the layer's real input activations captured from
one reference run. Without a catalog the result is
empty and a note says why: benchmarks never fail for lack of one.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import LpdcError
from ..ir import Graph, Node, Value
from .bench import PrimitiveTiming, Progress, Stats, no_progress

log = logging.getLogger(__name__)
CATALOG_MODULE = "lpdc.backends.numpy.primitives"
_LISTERS = ("primitives_for", "candidates", "choices", "available")
_TABLES = ("CATALOG", "PRIMITIVES", "REGISTRY")

Lister = Callable[[Node], list[str]]


def _names(entries: Any) -> list[str]:
    """Primitive names from whatever a catalog returns: names, objects with .name, or a dict."""
    if isinstance(entries, Mapping):
        return [str(k) for k in entries]
    out = []
    for e in entries or ():
        name = e if isinstance(e, str) else getattr(e, "name", None)
        if isinstance(name, str):
            out.append(name)
    return out


def load_catalog() -> tuple[Lister | None, str]:
    """(node -> primitive names, "") or (None, why not)."""
    try:
        mod = importlib.import_module(CATALOG_MODULE)
    except ImportError as e:
        return None, f"no primitive catalog in this build ({CATALOG_MODULE}: {e}); per-primitive timings skipped"
    for attr in _LISTERS:
        fn = getattr(mod, attr, None)
        if callable(fn):
            return (lambda node, fn=fn: _names(fn(node))), ""
    for attr in _TABLES:
        table = getattr(mod, attr, None)
        if isinstance(table, Mapping):
            return (lambda node, t=table: _from_table(t, node)), ""
    return None, f"{CATALOG_MODULE} has none of {', '.join(_LISTERS + _TABLES)}; per-primitive timings skipped"


def _from_table(table: Mapping[Any, Any], node: Node) -> list[str]:
    """Op name -> primitives, or primitive name -> record with an `.op` field."""
    if node.op in table:
        return _names(table[node.op])
    return [str(getattr(p, "name", k)) for k, p in table.items() if getattr(p, "op", None) == node.op]


def single_node_graph(graph: Graph, node: Node, primitive: str) -> Graph:
    """A graph of `node` alone: its activations become inputs, its constants stay constants."""
    g = Graph(node.name)
    mapped: dict[Value, Value] = {}
    ins: list[Value | None] = []
    for v in node.inputs:
        if v is None or v in mapped:
            ins.append(None if v is None else mapped[v])
            continue
        data = graph.const_data(v)
        nv = (g.add_const(data, v.name, dtype=v.type.dtype, quant=v.type.quant) if data is not None
              else g.add_input(v.name, v.type))
        mapped[v] = nv
        ins.append(nv)
    attrs = {**node.attrs, "primitive": primitive}
    new = g.add_node(node.op, ins, attrs, name=node.name, outputs=[v.name for v in node.outputs],
                     types=[v.type for v in node.outputs])
    g.set_outputs(new.outputs)
    return g


def _capture(exe: Any, inputs: Mapping[str, np.ndarray], wanted: set[str]) -> dict[str, np.ndarray]:
    """The arrays of the named values from one reference run."""
    seen = {k: np.asarray(v) for k, v in inputs.items() if k in wanted}

    def observe(node: Node, results: list[np.ndarray]) -> None:
        for v, r in zip(node.outputs, results, strict=True):
            if v.name in wanted:
                seen[v.name] = np.array(r, copy=True)

    exe.run(inputs, observer=observe)
    return seen


def _time_one(graph: Graph, node: Node, prim: str, arrays: Mapping[str, np.ndarray], repeats: int) -> PrimitiveTiming:
    from ..backends.numpy import compile_numpy

    try:
        sub = single_node_graph(graph, node, prim)
        exe = compile_numpy(sub)
        feed = {v.name: arrays[v.name] for v in sub.inputs}
        exe.run(feed)
        secs = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            exe.run(feed)
            secs.append(time.perf_counter() - t0)
    except LpdcError as e:
        log.warning("primitive %s on layer %s failed: %s", prim, node.name, e)
        return PrimitiveTiming(node.name, node.op, prim, float("nan"), float("nan"), float("nan"), str(e))
    s = Stats.of(secs)
    return PrimitiveTiming(node.name, node.op, prim, s.median_ms, s.min_ms, s.max_ms)


def time_primitives(graph: Graph, inputs: Mapping[str, np.ndarray], repeats: int, progress: Progress = no_progress,
                    lister: Lister | None = None) -> tuple[list[PrimitiveTiming], str]:
    """Time every (layer, primitive) pair the catalog offers; returns timings and a note ("" if fine)."""
    from ..backends.numpy import compile_numpy

    note = ""
    if lister is None:
        lister, note = load_catalog()
        if lister is None:
            log.info(note)
            return [], note
    work = [(n, _safe_list(lister, n)) for n in graph.nodes if n.op != "const"]
    work = [(n, prims) for n, prims in work if prims]
    if not work:
        return [], "the primitive catalog offers no alternatives for any layer of this model"
    wanted = {v.name for n, _ in work for v in _activations(graph, n.inputs)}
    arrays = _capture(compile_numpy(graph), inputs, wanted)
    tick = progress("primitives", len(work))
    out = []
    for node, prims in work:
        out += [_time_one(graph, node, p, arrays, repeats) for p in prims]
        tick()
    return out, note


def _safe_list(lister: Lister, node: Node) -> list[str]:
    try:
        return lister(node)
    except Exception as e:  # a catalog bug must not sink the whole benchmark; say which node
        log.warning("primitive catalog failed on node %s: %s", node.name, e)
        return []


def _activations(graph: Graph, values: Iterable[Value | None]) -> list[Value]:
    return [v for v in values if v is not None and graph.const_data(v) is None]
