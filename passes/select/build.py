"""Building the PBQP of a graph: one node per IR node, one matrix per producer-consumer edge.

    cost vector of node u:   c_u[i] = time of u run as choice i
                                      + conversions of graph inputs / constants into i's layout
    matrix of edge (p, u):   C_pu[i, j] = time to convert p's output from choice i's layout to
                                          the layout u's choice j reads (0 when they agree)

A multi-input node reads all its activations in its own layout, so producers that disagree each
pay their conversion; weights and other non-activation inputs always read the default layout.
Producers of graph outputs are pinned to the default layout (users get NCHW back).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from ...ir import Graph, Node, TensorType
from .choices import DEFAULT_LAYOUT, Choice, data_inputs, is_activation, node_choices
from .pbqp import PBQPProblem
from .pricing import Pricer


@dataclass
class Entry:
    """One IR node in the problem."""

    node: Node
    key: str
    choices: list[Choice]
    costs: np.ndarray  # the node's own time per choice
    origin: str  # where `costs` came from: measured / cached / model
    unary: np.ndarray  # conversion time of graph inputs and constants per choice
    data: list[int]  # inputs that follow the node's layout


@dataclass
class Selection:
    """A graph's PBQP and what is needed to read its solution back."""

    graph: Graph
    entries: dict[str, Entry]
    problem: PBQPProblem
    pricer: Pricer
    original_types: dict[str, TensorType] = field(default_factory=dict)  # value name -> type before selection

    def entry_of(self, node: Node) -> Entry:
        return self.entries[key_of(node)]


# A sparse primitive must beat the dense ones by this factor to be chosen: its irregular access
# makes its timings noisier, and a near-tie is not worth a format conversion (sparsify/).
SPARSE_MARGIN = 1.15


def sparse_margin(choices: list[Choice]) -> np.ndarray:
    """Per choice: SPARSE_MARGIN for sparse-family primitives, 1 for the others."""
    from ...backends.numpy.primitives import PRIMITIVES

    return np.array([SPARSE_MARGIN if c.primitive in PRIMITIVES and PRIMITIVES[c.primitive].family == "sparse"
                     else 1.0 for c in choices])


def key_of(node: Node) -> str:
    """PBQP node key: the name of the node's first output (value names are unique)."""
    return node.outputs[0].name


def wanted_layout(entry: Entry, choice: Choice, index: int) -> str:
    """The layout a node run as `choice` reads its input `index` in."""
    return choice.layout if index in entry.data else DEFAULT_LAYOUT


def build_problem(graph: Graph, pricer: Pricer, only: Collection[str] | None = None,
                  max_workspace: int | None = None) -> Selection:
    """The PBQP for `graph` (nodes in topological order, the default layout everywhere)."""
    pinned = {v.producer for v in graph.outputs if v.producer is not None}
    entries: dict[str, Entry] = {}
    for node in graph.nodes:
        if node.op == "const":
            continue
        choices = node_choices(node, graph, only, max_workspace, pin_default=node in pinned)
        costs, origin = pricer.node_costs(node, graph, choices)
        costs = costs * sparse_margin(choices)
        key = key_of(node)
        entries[key] = Entry(node, key, choices, costs, origin, np.zeros(len(choices)), data_inputs(node))
    problem = PBQPProblem()
    sel = Selection(graph, entries, problem, pricer, {v.name: v.type for v in graph.values()})
    for entry in entries.values():
        _add_inputs(sel, entry)
    for key, entry in entries.items():
        problem.costs[key] = entry.costs + entry.unary
    return sel


def _add_inputs(sel: Selection, entry: Entry) -> None:
    """Conversion costs on every activation input of `entry` (unary or an edge matrix)."""
    pricer = sel.pricer
    for i, v in enumerate(entry.node.inputs):
        if v is None or not is_activation(v.type):
            continue
        producer = v.producer
        wants = [wanted_layout(entry, c, i) for c in entry.choices]
        if producer is None or producer.op == "const":
            entry.unary += [pricer.convert_cost(v.type, DEFAULT_LAYOUT, w) for w in wants]
            continue
        src = sel.entries[key_of(producer)]
        mat = np.array([[pricer.convert_cost(v.type, c.layout, w) for w in wants] for c in src.choices])
        if not mat.any():
            continue
        edge = (src.key, entry.key)
        sel.problem.edges[edge] = sel.problem.edges[edge] + mat if edge in sel.problem.edges else mat
