"""What every backend's Executable shares: input/output names, median profiles, last uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
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
    runs = []
    for _ in range(max(1, repeats)):
        times: list = []
        runs.append((execute(times), times))
    med = np.median(np.array([[t.seconds for t in r[1]] for r in runs]), axis=0)
    first = runs[0][1]
    return runs[-1][0], [replace(t, seconds=float(s)) for t, s in zip(first, med, strict=True)]


def last_uses(nodes: Iterable[Node], keep: set[Value]) -> list[list[Value]]:
    """For each node of a run order, the values whose last reader it is (never those in `keep`)."""
    return last_reads(([v for v in n.inputs if v is not None] for n in nodes), keep)


def last_reads(reads: Iterable[Iterable[Value]], keep: set[Value]) -> list[list[Value]]:
    """For each step of a run order (the values it reads), the values whose last reader it is."""
    last: dict[Value, int] = {}
    n_steps = 0
    for i, values in enumerate(reads):
        n_steps = i + 1
        for v in values:
            last[v] = i
    dead: list[list[Value]] = [[] for _ in range(n_steps)]
    for v, i in last.items():
        if v not in keep:
            dead[i].append(v)
    return dead
