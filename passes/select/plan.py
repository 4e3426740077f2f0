"""The record of a selection: per-layer choices with their costs and runners-up, the conversions
inserted, the total cost and how it was solved; `explain()` renders it for `lpdc compile --explain`.

A layer's cost is its local cost given its neighbours' choices: its own time, plus the
conversions on its edges (each edge counted at both ends). The runner-up is the best other choice
under the same neighbours, i.e. what this layer would pick if it alone could change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .apply import Conversion
from .build import Selection


@dataclass(frozen=True)
class LayerPlan:
    """The decision for one node."""

    name: str
    op: str
    shape: str  # logical input -> output shape
    choice: str
    cost: float  # seconds, local (own time + adjacent conversions)
    origin: str
    runner_up: str = ""
    runner_up_cost: float = float("nan")
    choices: int = 1


@dataclass
class Plan:
    """A solved selection for one graph."""

    graph: str
    strategy: str
    device: str
    layers: list[LayerPlan]
    conversions: list[Conversion]
    cost: float
    solve_seconds: float
    optimal: bool
    reductions: dict[str, int] = field(default_factory=dict)
    pbqp_nodes: int = 0
    pbqp_edges: int = 0
    origins: dict[str, int] = field(default_factory=dict)

    @property
    def choices(self) -> dict[str, str]:
        """Layer name -> chosen `primitive@layout`."""
        return {layer.name: layer.choice for layer in self.layers}

    def explain(self, all_layers: bool = False) -> str:
        """A table of the decisions (layers with a real choice, or all with `all_layers`)."""
        proof = "provably optimal" if self.optimal else "heuristic (not proven optimal)"
        lines = [f"select-primitives on @{self.graph} for {self.device} ({self.strategy}): "
                 f"total {self.cost * 1e3:.3f} ms, solved in {self.solve_seconds * 1e3:.2f} ms, {proof}; "
                 f"PBQP {self.pbqp_nodes} nodes, {self.pbqp_edges} edges; costs "
                 + ", ".join(f"{k} {v}" for k, v in sorted(self.origins.items()))]
        lines.append(f"  {'layer':<24} {'op':<16} {'shape':<30} {'choice':<22} {'ms':>9}  "
                     f"{'runner-up':<22} {'ms':>9}")
        for layer in self.layers:
            if layer.choices < 2 and not all_layers and layer.op not in ("conv", "fully_connected"):
                continue
            runner = f"{layer.runner_up:<22} {layer.runner_up_cost * 1e3:9.3f}" if layer.runner_up else "-"
            lines.append(f"  {layer.name:<24} {layer.op:<16} {layer.shape:<30} {layer.choice:<22} "
                         f"{layer.cost * 1e3:9.3f}  {runner}" + ("" if layer.origin != "model" else "  (model)"))
        lines.append(f"  {len(self.conversions)} layout conversion(s) inserted")
        for c in self.conversions:
            lines.append(f"    {c.name:<30} {c.src}->{c.dst:<8} {'x'.join(map(str, c.shape)):<20} "
                         f"{c.cost * 1e3:9.3f} ms")
        return "\n".join(lines)


def _shape(sel: Selection, node) -> str:
    def one(v) -> str:
        t = sel.original_types.get(v.name, v.type)
        return "x".join(map(str, t.shape))

    ins = [v for i, v in enumerate(node.inputs) if v is not None and (i == 0 or i in sel.entry_of(node).data)]
    return f"{one(ins[0]) if ins else '-'}->{one(node.outputs[0])}"


def local_costs(sel: Selection, choice: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Each node's cost vector plus its edges evaluated at the neighbours' chosen indices."""
    local = {k: np.array(v, dtype=np.float64) for k, v in sel.problem.costs.items()}
    for (u, v), m in sel.problem.edges.items():
        local[u] += m[:, choice[v]]
        local[v] += m[choice[u], :]
    return local


def layer_plans(sel: Selection, choice: Mapping[str, int]) -> list[LayerPlan]:
    """One LayerPlan per node, in graph order."""
    local = local_costs(sel, choice)
    out = []
    for key, entry in sel.entries.items():
        x, costs = choice[key], local[key]
        others = [i for i in np.argsort(costs, kind="stable") if i != x and np.isfinite(costs[i])]
        runner = entry.choices[others[0]].label if others else ""
        out.append(LayerPlan(entry.node.name, entry.node.op, _shape(sel, entry.node), entry.choices[x].label,
                             float(costs[x]), entry.origin, runner,
                             float(costs[others[0]]) if others else float("nan"), len(entry.choices)))
    return out
