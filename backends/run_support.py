"""What every backend's Executable shares: input/output names, median profiles, last uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..ir import Node, Value


class GraphIO:
    """`input_names` / `output_names` of an Executable that holds `self.graph`."""

    graph: Any

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.graph.outputs]


def median_profile(execute: Callable[[list], dict[str, np.ndarray]], repeats: int) -> tuple[dict[str, np.ndarray],
                                                                                          list]:
    """Run `execute(times)` `repeats` times; each node's time is its median over the runs."""
    from .numpy.executable import NodeTiming

    runs = []
    for _ in range(max(1, repeats)):
        times: list = []
        runs.append((execute(times), times))
    med = np.median(np.array([[t.seconds for t in r[1]] for r in runs]), axis=0)
    first = runs[0][1]
    return runs[-1][0], [NodeTiming(t.name, t.op, float(s), t.primitive) for t, s in zip(first, med, strict=True)]


def last_uses(nodes: Iterable[Node], keep: set[Value]) -> list[list[Value]]:
    """For each node of a run order, the values whose last reader it is (never those in `keep`)."""
    order = list(nodes)
    last: dict[Value, int] = {}
    for i, n in enumerate(order):
        for v in n.inputs:
            if v is not None:
                last[v] = i
    dead: list[list[Value]] = [[] for _ in order]
    for v, i in last.items():
        if v not in keep:
            dead[i].append(v)
    return dead
