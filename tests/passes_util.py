"""Helpers for the pass tests: run passes, compare reference outputs, shrink models, count ops."""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from lpdc.errors import LpdcError
from lpdc.ir import Graph, TensorType, random_inputs
from lpdc.passes.instruments import compare_outputs, run_reference
from lpdc.passes.manager import PassManager, pipeline

CAFFE_DIR = Path(__file__).resolve().parents[2] / "shared" / "models" / "caffe"


def names_of(spec: str) -> list[str]:
    """A pipeline name ('O2') or a pass name as the list of passes to run."""
    return pipeline(spec) if spec in ("O0", "O1", "O2", "O3") else [spec]


def optimise(graph: Graph, spec: str) -> Graph:
    """A copy of `graph` after the passes of `spec` (the input graph is left as it was)."""
    return PassManager(names_of(spec)).run(graph.copy())


def fingerprint(graph: Graph) -> dict[str, int]:
    """A checksum of every parameter array (catches a pass that edits shared arrays in place)."""
    return {k: zlib.crc32(np.ascontiguousarray(a)) for k, a in graph.params.items()}


def unchanged(before: Graph, after: Graph, params: dict[str, int]) -> bool:
    """True when `after` prints like `before` and its parameters still have the checksums `params`
    (taken from `before` when it was built): then its outputs are equal by construction."""
    return str(before) == str(after) and fingerprint(after) == params


def assert_same_outputs(graph: Graph, after: Graph, inputs: dict[str, np.ndarray] | None = None,
                        reference: dict[str, np.ndarray] | None = None, what: str = "") -> None:
    """Reference outputs of `after` equal those of `graph` within 1e-4 * max|output|."""
    inputs = inputs if inputs is not None else random_inputs(graph)
    ref = reference if reference is not None else run_reference(graph, inputs)
    problem = compare_outputs(ref, run_reference(after, inputs), rtol=1e-4, atol=1e-6)
    assert problem is None, f"{what}: {problem}"


def op_counts(graph: Graph) -> Counter:
    """How many nodes of each op, constants left out."""
    return Counter(n.op for n in graph.nodes if n.op != "const")


def with_input_shape(graph: Graph, shape: tuple[int, ...]) -> Graph | None:
    """The same network for a different (single) input shape, or None where it does not fit
    (a fully connected layer or fixed pooling window sized for the original image)."""
    if len(graph.inputs) != 1:
        return None
    g = Graph(graph.name)
    vmap = {graph.inputs[0]: g.add_input(graph.inputs[0].name, TensorType(shape, graph.inputs[0].type.dtype))}
    try:
        for n in graph.nodes:
            if n.op == "const":
                vmap[n.output] = g.add_const(graph.params[n.attrs["param"]], n.output.name,
                                             dtype=n.output.type.dtype)
                continue
            node = g.add_node(n.op, [None if v is None else vmap[v] for v in n.inputs], dict(n.attrs),
                              name=n.name, outputs=[v.name for v in n.outputs])
            vmap.update(zip(n.outputs, node.outputs, strict=True))
        g.set_outputs([vmap[v] for v in graph.outputs])
        g.verify()
    except LpdcError:
        return None
    return g


def shrunk(graph: Graph, side: int = 64) -> Graph:
    """`graph` at side x side pixels when its layers allow it (a cheaper numerical check), else itself."""
    x = graph.inputs[0].type if len(graph.inputs) == 1 else None
    if x is None or x.rank != 4 or x.shape[2] <= side:
        return graph
    return with_input_shape(graph, (x.shape[0], x.shape[1], side, side)) or graph
